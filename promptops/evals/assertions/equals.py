"""equals: the answer, stripped of surrounding whitespace, is the value; a value that is not a string
(number, boolean, list, object) is compared with the output parsed as JSON."""

from __future__ import annotations

import json
from typing import Any

from promptops.evals.assertions._json import parse_json
from promptops.evals.assertions.base import Answer, AssertionResult, AssertionType, outcome, quote
from promptops.specs import Assertion


class Equals(AssertionType):
    name = "equals"

    def validate(self, assertion: Assertion) -> None:
        super().validate(assertion)
        if not assertion.has_value:
            raise ValueError(f"a {self.name} assertion needs a value")

    def assess(self, assertion: Assertion, answer: Answer, value: Any) -> AssertionResult:
        output = answer.output.strip()
        if not isinstance(value, str):
            parsed = parse_json(output)
            if isinstance(parsed, AssertionResult):
                return parsed
            same = _same_json(parsed, value)
            shown = quote(json.dumps(value, ensure_ascii=False))
            return outcome(same, f"output equals {shown}" if same else f"output is {quote(output)}, not {shown}")
        if output == value.strip():
            return outcome(True, f"output equals {quote(value.strip())}")
        return outcome(False, f"output is {quote(output)}, not {quote(value.strip())}")


def _same_json(a: Any, b: Any) -> bool:
    """JSON equality: 1 equals 1.0, but true is not 1 (Python's == would say it is)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_json, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[key], b[key]) for key in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


TYPE = Equals()
