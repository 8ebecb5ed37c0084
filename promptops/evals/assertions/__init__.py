"""Assertions: checks of one answer, each giving pass, a score and a reason; one registry of their types.

Every assertion type is one object in a module of this package named after it
(``contains.py`` holds ``contains``): a subclass of ``base.AssertionType``
(judged by code, scores 1 or 0) or of ``base.JudgedType`` (judged with model
calls through promptops.evals.judges). The module's docstring says what the
type checks. ``TYPES`` finds them all; lint (PO509), the runner and the judges
look types up here, so a new type is its module and its test. Modules whose
name starts with an underscore hold what several types share.

Values. An assertion's ``value`` is a Jinja template over the case's vars and
expected (``{{ expected }}``, ``{{ question }}`` or ``{{ vars.question }}``),
rendered in the bounded sandbox of promptops.templating. A case without an
expected (``None``) leaves ``expected`` undefined, so ``{{ expected }}`` fails
loudly rather than comparing with "None". A template that fails to render gives
a failed AssertionResult naming the error: the same suite may render for one case and
not another. A number is used as written. A list means every item: ``contains``,
``icontains`` and ``regex`` need every item to be found, ``not_contains`` none of
them, and ``starts_with`` one of them (an answer can open only one way); string
items are templates too.

Configuration mistakes that no answer could satisfy (an unknown type, a missing
value or bound, an invalid JSON Schema, a negative weight) raise ValueError.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from promptops.evals.assertions.base import (
    Answer,
    AssertionResult,
    AssertionType,
    JudgedType,
    JudgeInput,
    JudgeSession,
    assertion_weight,
    clip,
    render_value,
    template_context,
    template_failure,
)
from promptops.specs import Assertion
from promptops.templating import RenderLimits, TemplateError

__all__ = ["TYPES", "DETERMINISTIC", "MODEL_JUDGED", "Answer", "Assertion", "AssertionResult", "AssertionType",
           "JudgedType", "JudgeInput", "JudgeSession", "clip", "evaluate", "render_value", "score_case",
           "validated_type", "weight"]


def _discover() -> dict[str, AssertionType]:
    """Every type module's ``TYPE``, by name; a module is named after its type."""
    found: dict[str, AssertionType] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_") or module.name == "base":
            continue
        kind = importlib.import_module(f"{__name__}.{module.name}").TYPE
        if kind.name != module.name:
            raise ImportError(f"{__name__}.{module.name} defines the type {kind.name!r}: name the module after it")
        found[kind.name] = kind
    return dict(sorted(found.items()))


TYPES: dict[str, AssertionType] = _discover()
DETERMINISTIC: frozenset[str] = frozenset(name for name, kind in TYPES.items() if not kind.judged)
MODEL_JUDGED: frozenset[str] = frozenset(name for name, kind in TYPES.items() if kind.judged)


def type_of(assertion: Assertion) -> AssertionType:
    """The assertion's type; raises ValueError for a type no module defines."""
    kind = TYPES.get(assertion.type) if isinstance(assertion.type, str) else None
    if kind is None:
        raise ValueError(f"unknown assertion type {assertion.type!r}; known types: {', '.join(TYPES)}")
    return kind


def validated_type(assertion: Assertion) -> AssertionType:
    """The assertion's type, after checking what no answer could fix; raises ValueError."""
    kind = type_of(assertion)
    kind.validate(assertion)
    return kind


def weight(assertion: Assertion) -> float:
    """The assertion's weight in its case's score (default 1; 0: informative only)."""
    return assertion_weight(assertion)


def evaluate(assertion: Assertion, answer: Answer, variables: dict[str, Any], expected: Any,
             limits: RenderLimits | None = None) -> AssertionResult:
    """Judge ``answer`` by one assertion judged by code, of a case with ``variables`` and ``expected``.

    Raises ValueError for a malformed assertion or a model-judged type.
    """
    kind = validated_type(assertion)
    if kind.judged:
        raise ValueError(f"a {kind.name} assertion needs a model: it is judged with model calls, not here")
    try:
        value = render_value(assertion.value, template_context(variables, expected), limits)
    except TemplateError as exc:
        return AssertionResult(False, 0.0, template_failure(exc))
    try:
        return kind.assess(assertion, answer, value)
    except RecursionError:  # JSON nested deeper than Python's stack
        return AssertionResult(False, 0.0, "output is nested too deeply to check")


def score_case(outcomes: list[tuple[Assertion, AssertionResult]], threshold: float) -> tuple[bool, float]:
    """Whether a case passes, and its score: the weighted mean of its assertions' scores.

    Weight 0 makes an assertion informative only. A threshold of 1 (the default)
    means every weighted assertion passes, whatever its score (a judge passing
    at 0.9 against its threshold of 0.8 passes); below 1, the weighted score must
    reach it. A case with no weighted assertion passes with score 1: nothing
    gates it.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"a case threshold must be between 0 and 1, not {threshold!r}")
    weighted = [(w, outcome) for assertion, outcome in outcomes if (w := weight(assertion)) > 0]
    if not weighted:
        return True, 1.0
    score = sum(w * outcome.score for w, outcome in weighted) / sum(w for w, _ in weighted)
    if threshold >= 1:
        return all(outcome.passed for _, outcome in weighted), score
    return score >= threshold - 1e-9, score  # 1e-9: weights such as 0.1 do not sum exactly
