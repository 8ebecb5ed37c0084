"""The shape version of each JSON document the reports write, defined once.

A version changes only when a field changes meaning or disappears (new fields may
appear without one). Each schema in schemas/ holds its document's version as a
const; tests/test_schemas.py holds the two to each other.
"""

EVAL_RESULTS = 2  # schemas/eval-results.schema.json: `promptops eval --format json`
CHECK_REPORT = EVAL_RESULTS  # `promptops ci`'s report.json embeds the eval results and moves with them
COST_REPORT = 2  # schemas/cost-report.schema.json: `promptops cost --format json` (2: monthly counts retrieval)
DIFF = 1  # `promptops diff --format json`
LINT = 1  # `promptops lint --format json`
