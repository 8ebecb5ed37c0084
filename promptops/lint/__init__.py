"""``promptops lint``: schema and semantic checks with stable rule codes."""

from promptops.lint.engine import lint
from promptops.lint.registry import RULES, LintRule, all_rules, find_rule
from promptops.model.lint import LintRun

__all__ = ["LintRun", "RULES", "LintRule", "find_rule", "lint", "all_rules"]
