"""Finding a value's items in an answer: what contains, icontains and not_contains share."""

from __future__ import annotations

from typing import Any

from promptops.evals.assertions.base import AssertionResult, items, outcome, quote


def found(output: str, value: Any, fold: bool) -> tuple[list[str], list[str]]:
    """The value's items found in the output and those missing."""
    haystack = output.casefold() if fold else output
    present: list[str] = []
    missing: list[str] = []
    for item in items(value):
        (present if (item.casefold() if fold else item) in haystack else missing).append(item)
    return present, missing


def contains_all(output: str, value: Any, fold: bool) -> AssertionResult:
    present, missing = found(output, value, fold)
    how = " (ignoring case)" if fold else ""
    if missing:
        return outcome(False, f"output does not contain {', '.join(map(quote, missing[:3]))}{how}")
    return outcome(True, f"output contains {', '.join(map(quote, present[:3]))}{how}")
