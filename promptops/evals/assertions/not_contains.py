"""not_contains: the answer contains none of the value's items."""

from __future__ import annotations

from typing import Any

from promptops.evals.assertions._text import found
from promptops.evals.assertions.base import Answer, AssertionResult, TextValued, outcome, quote
from promptops.specs import Assertion


class NotContains(TextValued):
    name = "not_contains"

    def assess(self, assertion: Assertion, answer: Answer, value: Any) -> AssertionResult:
        present, missing = found(answer.output, value, fold=False)
        if present:
            return outcome(False, f"output contains {', '.join(map(quote, present[:3]))}")
        return outcome(True, f"output does not contain {', '.join(map(quote, missing[:3]))}")


TYPE = NotContains()
