"""starts_with: the answer, after leading whitespace, opens with the value (one of a list's items: an answer
can open only one way)."""

from __future__ import annotations

from typing import Any

from promptops.evals.assertions.base import Answer, AssertionResult, TextValued, items, outcome, quote
from promptops.specs import Assertion


class StartsWith(TextValued):
    name = "starts_with"

    def assess(self, assertion: Assertion, answer: Answer, value: Any) -> AssertionResult:
        output = answer.output.lstrip()
        openings = items(value)
        for opening in openings:
            if output.startswith(opening):
                return outcome(True, f"output starts with {quote(opening)}")
        shown = output[: max(map(len, openings))]
        return outcome(False, f"output starts with {quote(shown)}, not {' or '.join(map(quote, openings[:3]))}")


TYPE = StartsWith()
