"""is_json: the answer is valid JSON (a ```json fenced block is unwrapped)."""

from __future__ import annotations

from typing import Any

from promptops.evals.assertions._json import parse_json
from promptops.evals.assertions.base import Answer, AssertionResult, AssertionType, outcome
from promptops.specs import Assertion


class IsJson(AssertionType):
    name = "is_json"

    def assess(self, assertion: Assertion, answer: Answer, value: Any) -> AssertionResult:
        parsed = parse_json(answer.output)
        return parsed if isinstance(parsed, AssertionResult) else outcome(True, "output is valid JSON")


TYPE = IsJson()
