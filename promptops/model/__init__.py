"""The data layer: what the stages build and the renderers read.

Plain dataclasses and enums, below every stage: nothing here imports a stage
(ci, diff, estimate, evals, lint, release, gitrefs, config) or a renderer, so a
renderer under ``promptops.report`` reads a check without importing the code
that made it (tests/test_layers.py holds both rules).
"""
