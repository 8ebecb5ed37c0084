"""Environments: promote a reviewed prompt version through dev, staging and prod, roll it back,
and load what was promoted at runtime (``promptops.load``).

``store`` holds the files (light: lint and the runtime read them); ``promote``
moves pointers with evidence; ``status`` reports; ``runtime`` loads releases.
"""
