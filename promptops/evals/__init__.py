"""Eval suites through litellm: runner, cache, assertions, comparison."""
