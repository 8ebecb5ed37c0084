"""length: the answer's length in characters, without surrounding whitespace, is within min and max."""

from __future__ import annotations

from typing import Any

from promptops.evals.assertions.base import Answer, AssertionResult, Bounded, outcome
from promptops.specs import Assertion


class Length(Bounded):
    name = "length"
    bounds = ("min", "max")

    def assess(self, assertion: Assertion, answer: Answer, value: Any) -> AssertionResult:
        size = len(answer.output.strip())  # a trailing newline is not part of what was said
        low, high = assertion.min, assertion.max
        if low is not None and size < low:
            return outcome(False, f"output is {size:,} characters, fewer than the minimum {low:,}")
        if high is not None and size > high:
            return outcome(False, f"output is {size:,} characters, more than the maximum {high:,}")
        return outcome(True, f"output is {size:,} characters, within bounds")


TYPE = Length()
