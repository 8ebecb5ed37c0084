"""What every assertion type is made of: the assertion as written, the answer, the outcome, and the type's contract.

An assertion type is one object, a subclass of ``AssertionType`` (judged by code)
or ``JudgedType`` (judged with model calls), in a module of this package named
after the type. ``validate`` raises ValueError for what no answer could satisfy;
the registry (``promptops.evals.assertions``) finds the type by name for lint,
the runner and the judges alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from promptops.specs import Assertion
from promptops.templating import RenderLimits, TemplateError, render


@dataclass(frozen=True)
class AssertionResult:
    passed: bool
    score: float  # 0..1
    reason: str  # one short sentence for reports


@dataclass(frozen=True)
class Answer:
    output: str
    latency_ms: float | None
    cost_usd: float | None


class AssertionType:
    """A kind of assertion on one answer, judged by code; subclasses set ``name`` and implement ``assess``."""

    name: ClassVar[str]
    judged: ClassVar[bool] = False

    def validate(self, assertion: Assertion) -> None:
        """Raise ValueError for what no answer could satisfy; the type's own checks extend this one."""
        assertion_weight(assertion)

    def assess(self, assertion: Assertion, answer: Answer, value: Any) -> AssertionResult:
        """The answer judged by the assertion, whose value is rendered (``value``)."""
        raise NotImplementedError


@dataclass(frozen=True)
class JudgeInput:
    """What a judged assertion sees of its case: the answer and what it answers."""

    answer: Answer
    variables: dict[str, Any]
    expected: Any
    question: str | None  # what the answer answers
    passages: list[str] | None  # retrieved passages, when the assertion names no context var
    limits: RenderLimits | None


class JudgeSession(Protocol):
    """The model calls one judged assertion makes (promptops.evals.judges: cached, retried, priced)."""

    async def ask(self, model: str, template: str, **data: Any) -> str | AssertionResult:
        """The judge's answer to ``templates/judges/<template>`` rendered with ``data``, or a failed AssertionResult."""

    async def embed(self, model: str, text: str) -> list[float] | AssertionResult:
        """The text's embedding, or a failed AssertionResult."""


class JudgedType(AssertionType):
    """A kind of assertion judged with model calls: it builds the judge's requests and reads its verdicts."""

    judged = True
    default_threshold: ClassVar[float]
    embeds: ClassVar[bool] = False  # True: its model is the embedding model, not the judge
    needs_value: ClassVar[bool] = False  # the value is text the judge needs (a rubric, a reference)

    def validate(self, assertion: Assertion) -> None:
        super().validate(assertion)
        self.threshold(assertion)
        if self.needs_value:
            if not assertion.has_value:
                raise ValueError(f"a {self.name} assertion needs a value")
            if isinstance(assertion.value, (list, dict)) or assertion.value is None:
                raise ValueError(f"a {self.name} assertion's value must be text, not {clip(repr(assertion.value))}")

    def threshold(self, assertion: Assertion) -> float:
        value = self.default_threshold if assertion.threshold is None else assertion.threshold
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"a {self.name} assertion's threshold must be a number from 0 to 1, "
                             f"not {clip(repr(value))}")
        return float(value)

    async def judge(self, assertion: Assertion, given: JudgeInput, session: JudgeSession, model: str,
                    threshold: float) -> AssertionResult:
        """The answer judged by the assertion with ``model``; raise ValueError when the case lacks what it needs."""
        raise NotImplementedError

    @staticmethod
    def rendered_value(assertion: Assertion, given: JudgeInput) -> str | AssertionResult:
        """The rendered value as text (the rubric, the reference), or a failed AssertionResult when its template
        fails."""
        try:
            return str(render_value(assertion.value, template_context(given.variables, given.expected), given.limits))
        except TemplateError as exc:
            return AssertionResult(False, 0.0, template_failure(exc))


# -- shared by the types ---------------------------------------------------


def outcome(passed: bool, reason: str) -> AssertionResult:
    return AssertionResult(passed, 1.0 if passed else 0.0, reason)


def clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote(text: str) -> str:
    return repr(clip(text))


def items(value: Any) -> list[str]:
    """A text value as the list of strings it stands for."""
    return [str(item) for item in (value if isinstance(value, list) else [value])]


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_text(value: Any) -> bool:
    return isinstance(value, str) or is_number(value)


def is_text_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(map(is_text, value))


def assertion_weight(assertion: Assertion) -> float:
    """The assertion's weight in its case's score (default 1; 0: informative only)."""
    value = assertion.weight
    if not is_number(value) or value < 0:
        raise ValueError(f"a {assertion.type} assertion's weight must be a number >= 0, not {clip(repr(value))}")
    return float(value)


def template_context(variables: dict[str, Any], expected: Any) -> dict[str, Any]:
    """What an assertion's value template sees: the case's vars, by name and as ``vars``, and ``expected``."""
    context = {**variables, "vars": variables}
    if expected is not None:  # no expected: {{ expected }} fails loudly rather than comparing with "None"
        context["expected"] = expected
    return context


def render_value(value: Any, variables: dict[str, Any], limits: RenderLimits | None) -> Any:
    """Strings, and strings in a list, rendered as templates; anything else as written."""
    if isinstance(value, list):
        return [render_value(item, variables, limits) for item in value]
    if not isinstance(value, str) or not any(mark in value for mark in ("{{", "{%", "{#")):
        return value  # plain text renders to itself: skip the sandbox
    return render(value, variables, limits)


def template_failure(exc: Exception) -> str:
    return f"the value template failed: {clip(str(getattr(exc, 'message', None) or exc), 160)}"


class TextValued(AssertionType):
    """A type whose value is text, a number or a non-empty list of them (each item a template)."""

    def validate(self, assertion: Assertion) -> None:
        super().validate(assertion)
        if not assertion.has_value:
            raise ValueError(f"a {self.name} assertion needs a value")
        value = assertion.value
        if not (is_text(value) or is_text_list(value)):
            raise ValueError(f"a {self.name} assertion's value must be text, a number or a non-empty list of them, "
                             f"not {clip(repr(value))}")


class Bounded(AssertionType):
    """A type with numeric bounds (``bounds``: the names it takes; at least one is needed)."""

    bounds: ClassVar[tuple[str, ...]]

    def validate(self, assertion: Assertion) -> None:
        super().validate(assertion)
        given = {name: getattr(assertion, name) for name in self.bounds if getattr(assertion, name) is not None}
        for name, bound in given.items():
            if not (is_number(bound) and bound >= 0):
                raise ValueError(f"a {self.name} assertion's {name} must be a number >= 0, not {clip(repr(bound))}")
        if not given:
            raise ValueError(f"a {self.name} assertion needs {' or '.join(self.bounds)}")
