"""contains: the answer contains the value (every item of a list)."""

from __future__ import annotations

from typing import Any

from promptops.evals.assertions._text import contains_all
from promptops.evals.assertions.base import Answer, AssertionResult, TextValued
from promptops.specs import Assertion


class Contains(TextValued):
    name = "contains"

    def assess(self, assertion: Assertion, answer: Answer, value: Any) -> AssertionResult:
        return contains_all(answer.output, value, fold=False)


TYPE = Contains()
