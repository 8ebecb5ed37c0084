"""Estimates before any model is called: tokens per request (offline) and what they cost."""
