"""Reading a judge's answer and scoring it: what the model-judged types share.

Judge answers are JSON, read tolerantly: the first JSON value of the expected
shape anywhere in the answer (bare, fenced, or inside prose). An answer with
none gives a failed AssertionResult, NOT_JSON.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable
from typing import Any

from promptops.evals.assertions.base import AssertionResult, clip

NOT_JSON = "judge answer was not valid JSON"
MAX_JSON_STARTS = 100  # places in a judge's answer where its JSON may begin
_OPENERS = re.compile(r"[\[{]")


def failed(reason: str) -> AssertionResult:
    return AssertionResult(False, 0.0, reason)


def scored(score: float, threshold: float, reason: str) -> AssertionResult:
    # 1e-9: a share such as 7/10 need not equal 0.7 exactly.
    return AssertionResult(score >= threshold - 1e-9, score, reason)


def mark(score: float, threshold: float) -> str:
    return f"{score:.2f} (threshold {threshold:g})"


def share(items: list[str], good: list[bool], threshold: float, what: str, bad_name: str,
          verdicts: int) -> AssertionResult:
    """The share of ``items`` judged good, naming a few of the others."""
    score = sum(good) / len(items)
    reason = f"{sum(good)} of {len(items)} {what}: {mark(score, threshold)}"
    if verdicts < len(items):
        reason += f"; the judge gave {verdicts} verdicts for {len(items)}, the rest count against"
    bad = [item for item, ok in zip(items, good) if not ok]
    if bad:
        reason += f"; {bad_name}: {', '.join(repr(clip(item)) for item in bad[:2])}"
    return scored(score, threshold, reason)


def is_fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def is_object_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def find_json(text: str, wanted: Callable[[Any], bool]) -> Any:
    """The first JSON value in ``text`` that ``wanted`` accepts, or None.

    Tried at every ``[`` and ``{``, so a bare answer, a fenced block and JSON
    amid prose all parse, and a "[1]" in the prose is skipped when a list of
    claims is wanted. At the first MAX_JSON_STARTS of them only: each failed try
    may read to the end of the answer, and an answer of 16,000 brackets took 3 s.
    """
    decoder = json.JSONDecoder()
    for opener in itertools.islice(_OPENERS.finditer(text), MAX_JSON_STARTS):
        try:
            value, _ = decoder.raw_decode(text, opener.start())
        except (ValueError, RecursionError):  # not JSON here; nested past Python's stack
            continue
        if wanted(value):
            return value
    return None
