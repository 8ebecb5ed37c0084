"""``promptops lint``: schema and semantic checks with stable rule codes."""

from promptops.lint.engine import LintRun, lint
from promptops.lint.registry import RULES, Rule, find_rule, load_rules

__all__ = ["LintRun", "RULES", "Rule", "find_rule", "lint", "load_rules"]
