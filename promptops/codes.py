"""The rule codes that modules below the lint stage write into findings, named once.

The loader, the YAML reader, the git reader, the lock store and the cost estimate report these;
lint's registry gives each its name and --explain text (``promptops/lint/``), and
tests/lint/test_rule_codes.py holds every code the package writes to the registry. A rule that
a lint module reports itself is written once, where it is registered.
"""

from __future__ import annotations

UNREADABLE_FILE = "PO100"  # unreadable-file
YAML_SYNTAX = "PO101"  # yaml-syntax
DUPLICATE_KEY = "PO102"  # duplicate-key
UNSAFE_TAG = "PO103"  # unsafe-tag
TOO_COMPLEX = "PO104"  # too-complex
NOT_A_MAPPING = "PO105"  # not-a-mapping
UNKNOWN_KEY = "PO110"  # unknown-key
MISSING_KEY = "PO111"  # missing-key
WRONG_TYPE = "PO112"  # wrong-type
INVALID_VALUE = "PO113"  # invalid-value
INVALID_LOCK = "PO130"  # invalid-lock
INPUT_BUDGET_EXCEEDED = "PO410"  # input-budget-exceeded
COST_BUDGET_EXCEEDED = "PO411"  # cost-budget-exceeded
UNKNOWN_ASSERTION_TYPE = "PO503"  # unknown-assertion-type
DATASET_MISSING = "PO504"  # dataset-missing
DATASET_INVALID = "PO505"  # dataset-invalid
