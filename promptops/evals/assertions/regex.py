"""regex: the answer matches the pattern (every item of a list).

Patterns are Python ``re`` syntax, checked with ``re.compile`` like lint's PO508,
and run by the ``regex`` module (re-compatible; it comes with tiktoken), which,
unlike ``re``, can stop a match after a timeout: a pattern that backtracks
catastrophically fails after REGEX_TIMEOUT_S instead of hanging the run.
Patterns longer than MAX_PATTERN_CHARS are refused and only the first
MAX_SCAN_CHARS characters of the output are searched.
"""

from __future__ import annotations

import re
from typing import Any

import regex

from promptops.evals.assertions.base import Answer, AssertionResult, TextValued, clip, items, outcome
from promptops.specs import Assertion

MAX_PATTERN_CHARS = 1000
MAX_SCAN_CHARS = 100_000
REGEX_TIMEOUT_S = 1.0


class Regex(TextValued):
    name = "regex"

    def assess(self, assertion: Assertion, answer: Answer, value: Any) -> AssertionResult:
        scanned = answer.output[:MAX_SCAN_CHARS]
        where = f" in the first {MAX_SCAN_CHARS:,} characters" if len(answer.output) > MAX_SCAN_CHARS else ""
        patterns = items(value)
        for pattern in patterns:
            shown = "/" + clip(pattern) + "/"
            if len(pattern) > MAX_PATTERN_CHARS:
                return outcome(False, f"regex {shown} is longer than {MAX_PATTERN_CHARS:,} characters")
            try:
                re.compile(pattern)  # the dialect is re's, as lint checks it
                match = regex.compile(pattern).search(scanned, timeout=REGEX_TIMEOUT_S)
            except (re.error, regex.error) as exc:
                return outcome(False, f"regex {shown} is invalid: {exc}")
            except TimeoutError:
                return outcome(False, f"regex {shown} took longer than {REGEX_TIMEOUT_S:g} s "
                                      "(catastrophic backtracking?)")
            if match is None:
                return outcome(False, f"output does not match {shown}{where}")
        return outcome(True, f"output matches {' and '.join('/' + clip(p) + '/' for p in patterns[:3])}")


TYPE = Regex()
