"""is_json: the answer is valid JSON (a ```json fenced block is unwrapped)."""

from __future__ import annotations

from typing import Any

from promptops.evals.assertions._json import parse_json
from promptops.evals.assertions.base import Answer, Assertion, AssertionType, Outcome, outcome


class IsJson(AssertionType):
    name = "is_json"

    def check(self, assertion: Assertion, answer: Answer, value: Any) -> Outcome:
        parsed = parse_json(answer.output)
        return parsed if isinstance(parsed, Outcome) else outcome(True, "output is valid JSON")


TYPE = IsJson()
