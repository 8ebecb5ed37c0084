"""Reading an answer as JSON: what equals, is_json and json_schema share."""

from __future__ import annotations

import json
import re
from typing import Any

from promptops.evals.assertions.base import clip, outcome

_FENCE = re.compile(r"\A```[ \t]*(?:json)?[ \t]*\n(.*?)\n?[ \t]*```\Z", re.DOTALL | re.IGNORECASE)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json accepts NaN and Infinity; JSON does not


def parse_json(output: str) -> Any:
    """The output as JSON (a ```json fenced block is unwrapped), or a failed AssertionResult saying why not."""
    text = output.strip()
    fenced = _FENCE.match(text)
    try:
        return json.loads(fenced.group(1) if fenced else text, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError, and too many digits in an integer
        return outcome(False, f"output is not valid JSON: {clip(str(exc), 120)}")
