"""Deterministic assertions: checks of one answer that need no model, each giving pass, score, reason.

Every check is a small function registered by type in ``_CHECKS``; ``evaluate``
validates the assertion, renders its value and dispatches. Scores are 1 or 0.
The model-judged types (``MODEL_JUDGED``) are known here but judged elsewhere.

Values. An assertion's ``value`` is a Jinja template over the case's vars and
expected (``{{ expected }}``, ``{{ question }}`` or ``{{ vars.question }}``),
rendered in the bounded sandbox of promptops.templating. A case without an
expected (``None``) leaves ``expected`` undefined, so ``{{ expected }}`` fails
loudly rather than comparing with "None". A template that fails to render gives
a failed Outcome naming the error: the same suite may render for one case and
not another. A number is used as written. A list means every item: ``contains``,
``icontains`` and ``regex`` need every item to be found, ``not_contains`` none of
them, and ``starts_with`` one of them (an answer can open only one way); string
items are templates too. ``equals`` with a value that is not a string (number,
boolean, list, object) compares it with the output parsed as JSON.

Regex safety. Patterns are Python ``re`` syntax, checked with ``re.compile``
like lint's PO508, and run by the ``regex`` module (re-compatible; it comes with
tiktoken), which, unlike ``re``, can stop a match after a timeout: a pattern
that backtracks catastrophically fails after REGEX_TIMEOUT_S instead of hanging
the run. Patterns longer than MAX_PATTERN_CHARS are refused and only the first
MAX_SCAN_CHARS characters of the output are searched. A ``json_schema``
assertion's patterns (``pattern``, ``patternProperties``, and
``additionalProperties`` beside them) run the same way, all of one assertion
within REGEX_TIMEOUT_S together; ``uniqueItems`` is checked in linear time
(jsonschema compares objects pairwise). A schema that combines
``unevaluatedProperties`` with ``patternProperties`` fails the assertion
without validating, as jsonschema would run those patterns itself, with ``re``.

Refusal. An answer refuses when, ignoring case, curly apostrophes, leading
punctuation and lead-in words such as "Sorry," or "Unfortunately,", it starts
with one of REFUSAL_PHRASES, or when at least half of its sentences contain
one. The list is English and includes "I don't know": declining to answer
outside the passages is the refusal a RAG prompt asks for. It is a heuristic; a
``regex`` or ``llm_rubric`` assertion checks finer intent.

Configuration mistakes that no answer could satisfy (an unknown type, a missing
value or bound, an invalid JSON Schema, a negative weight) raise ValueError.
"""

from __future__ import annotations

import json
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator

import regex

from promptops.templating import RenderLimits, TemplateError, render

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

MAX_PATTERN_CHARS = 1000
MAX_SCAN_CHARS = 100_000
REGEX_TIMEOUT_S = 1.0

REFUSAL_PHRASES: tuple[str, ...] = (
    # declining
    "i can't", "i cannot", "i can not", "i won't", "i will not", "i must decline", "i have to decline",
    "i'm unable", "i am unable", "i'm not able", "i am not able",
    "i'm not allowed", "i am not allowed", "i'm not permitted", "i am not permitted",
    # apologising
    "i'm sorry", "i am sorry", "i apologize", "i apologise", "my apologies",
    # not knowing
    "i don't know", "i do not know", "i'm not sure", "i am not sure",
    "i don't have enough information", "i do not have enough information",
    "i don't have information", "i do not have information",
    # disclaiming
    "as an ai", "as a language model",
)


@dataclass(frozen=True)
class Outcome:
    passed: bool
    score: float  # 0..1
    reason: str  # one short sentence for reports


@dataclass(frozen=True)
class Answer:
    output: str
    latency_ms: float | None
    cost_usd: float | None


Check = Callable[[dict[str, Any], Answer, Any], Outcome]  # the assertion, the answer, its rendered value


def _outcome(passed: bool, reason: str) -> Outcome:
    return Outcome(passed, 1.0 if passed else 0.0, reason)


def clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quote(text: str) -> str:
    return repr(clip(text))


def _items(value: Any) -> list[str]:
    """A text value as the list of strings it stands for."""
    return [str(item) for item in (value if isinstance(value, list) else [value])]


# -- text ------------------------------------------------------------------


def _equals(assertion: dict[str, Any], answer: Answer, value: Any) -> Outcome:
    output = answer.output.strip()
    if not isinstance(value, str):
        parsed = _parse_json(output)
        if isinstance(parsed, Outcome):
            return parsed
        same = _same_json(parsed, value)
        shown = _quote(json.dumps(value, ensure_ascii=False))
        return _outcome(same, f"output equals {shown}" if same else f"output is {_quote(output)}, not {shown}")
    if output == value.strip():
        return _outcome(True, f"output equals {_quote(value.strip())}")
    return _outcome(False, f"output is {_quote(output)}, not {_quote(value.strip())}")


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


def _found(output: str, value: Any, fold: bool) -> tuple[list[str], list[str]]:
    """The value's items found in the output and those missing."""
    haystack = output.casefold() if fold else output
    found, missing = [], []
    for item in _items(value):
        (found if (item.casefold() if fold else item) in haystack else missing).append(item)
    return found, missing


def _contains(assertion: dict[str, Any], answer: Answer, value: Any) -> Outcome:
    return _contains_all(answer.output, value, fold=False)


def _icontains(assertion: dict[str, Any], answer: Answer, value: Any) -> Outcome:
    return _contains_all(answer.output, value, fold=True)


def _contains_all(output: str, value: Any, fold: bool) -> Outcome:
    found, missing = _found(output, value, fold)
    how = " (ignoring case)" if fold else ""
    if missing:
        return _outcome(False, f"output does not contain {', '.join(map(_quote, missing[:3]))}{how}")
    return _outcome(True, f"output contains {', '.join(map(_quote, found[:3]))}{how}")


def _not_contains(assertion: dict[str, Any], answer: Answer, value: Any) -> Outcome:
    found, missing = _found(answer.output, value, fold=False)
    if found:
        return _outcome(False, f"output contains {', '.join(map(_quote, found[:3]))}")
    return _outcome(True, f"output does not contain {', '.join(map(_quote, missing[:3]))}")


def _starts_with(assertion: dict[str, Any], answer: Answer, value: Any) -> Outcome:
    output = answer.output.lstrip()
    openings = _items(value)
    for opening in openings:
        if output.startswith(opening):
            return _outcome(True, f"output starts with {_quote(opening)}")
    shown = output[: max(map(len, openings))]
    return _outcome(False, f"output starts with {_quote(shown)}, not {' or '.join(map(_quote, openings[:3]))}")


def _regex(assertion: dict[str, Any], answer: Answer, value: Any) -> Outcome:
    scanned = answer.output[:MAX_SCAN_CHARS]
    where = f" in the first {MAX_SCAN_CHARS:,} characters" if len(answer.output) > MAX_SCAN_CHARS else ""
    patterns = _items(value)
    for pattern in patterns:
        shown = "/" + clip(pattern) + "/"
        if len(pattern) > MAX_PATTERN_CHARS:
            return _outcome(False, f"regex {shown} is longer than {MAX_PATTERN_CHARS:,} characters")
        try:
            re.compile(pattern)  # the dialect is re's, as lint checks it
            match = regex.compile(pattern).search(scanned, timeout=REGEX_TIMEOUT_S)
        except (re.error, regex.error) as exc:
            return _outcome(False, f"regex {shown} is invalid: {exc}")
        except TimeoutError:
            return _outcome(False, f"regex {shown} took longer than {REGEX_TIMEOUT_S:g} s (catastrophic backtracking?)")
        if match is None:
            return _outcome(False, f"output does not match {shown}{where}")
    return _outcome(True, f"output matches {' and '.join('/' + clip(p) + '/' for p in patterns[:3])}")


# -- JSON ------------------------------------------------------------------

_FENCE = re.compile(r"\A```[ \t]*(?:json)?[ \t]*\n(.*?)\n?[ \t]*```\Z", re.DOTALL | re.IGNORECASE)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json accepts NaN and Infinity; JSON does not


def _parse_json(output: str) -> Any:
    """The output as JSON (a ```json fenced block is unwrapped), or a failed Outcome saying why not."""
    text = output.strip()
    fenced = _FENCE.match(text)
    try:
        return json.loads(fenced.group(1) if fenced else text, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError, and too many digits in an integer
        return _outcome(False, f"output is not valid JSON: {clip(str(exc), 120)}")


def _is_json(assertion: dict[str, Any], answer: Answer, value: Any) -> Outcome:
    parsed = _parse_json(answer.output)
    return parsed if isinstance(parsed, Outcome) else _outcome(True, "output is valid JSON")


def _json_path(parts: Any) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)


class _PatternTimeout(Exception):
    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.pattern = pattern


# When the json_schema assertion being checked must end its pattern matching (time.monotonic()).
_PATTERN_DEADLINE: ContextVar[float | None] = ContextVar("pattern_deadline", default=None)


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern)  # the schema check already compiled it with re: same dialect


def _search(pattern: str, text: str) -> bool:
    """``re.search`` as jsonschema would run it, but by ``regex``, stopped at the assertion's deadline."""
    deadline = _PATTERN_DEADLINE.get()
    remaining = REGEX_TIMEOUT_S if deadline is None else deadline - time.monotonic()
    try:
        if remaining <= 0:
            raise TimeoutError
        return _compiled(pattern).search(text, timeout=remaining) is not None
    except TimeoutError:
        raise _PatternTimeout(pattern) from None


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{clip(instance)!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, additional: Any, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """Keys neither ``properties`` nor a ``patternProperties`` pattern covers, checked against ``additional``."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

    patterns = list(schema.get("patternProperties") or ())
    if not patterns or not validator.is_type(instance, "object"):  # no pattern to run: jsonschema's own
        yield from Draft202012Validator.VALIDATORS["additionalProperties"](validator, additional, instance, schema)
        return
    named = schema.get("properties") or {}
    extras = [key for key in instance if key not in named and not any(_search(p, key) for p in patterns)]
    if validator.is_type(additional, "object"):
        for key in extras:
            yield from validator.descend(instance[key], additional, path=key)
    elif additional is False and extras:
        keys = ", ".join(map(repr, sorted(extras)[:5]))
        verb = "matches" if len(extras) == 1 else "match"
        yield ValidationError(f"{keys} {verb} none of the patterns {', '.join(map(repr, sorted(patterns)))}")


def _json_key(value: Any) -> Hashable:
    """A hashable stand-in equal for equal JSON values: 1 and 1.0 alike, true and 1 not, key order ignored."""
    if isinstance(value, dict):
        return "object", frozenset((key, _json_key(item)) for key, item in value.items())
    if isinstance(value, list):
        return "array", tuple(map(_json_key, value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "number", value
    return type(value).__name__, value


def _unique_items(validator: Any, unique: Any, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """Linear, with a set: jsonschema compares unsortable items pairwise, minutes for a long answer."""
    from jsonschema.exceptions import ValidationError

    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Hashable] = set()
    for index, item in enumerate(instance):
        key = _json_key(item)
        if key in seen:
            yield ValidationError(f"the array has non-unique elements (item {index} repeats an earlier one)")
            return
        seen.add(key)


@lru_cache(maxsize=1)
def _validator_class() -> Any:
    """Draft 2020-12, with every keyword that runs a regex, and uniqueItems, bounded."""
    from jsonschema import Draft202012Validator, validators

    return validators.extend(Draft202012Validator, {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
        "uniqueItems": _unique_items,
    })


def _subschemas(schema: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a schema: the schema itself, its subschemas and definitions."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _keywords(schema: Any) -> set[str]:
    """Every key used anywhere in a schema."""
    return {key for node in _subschemas(schema) for key in node if isinstance(key, str)}


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    """Checking a schema against the metaschema costs more than most validations: once per schema."""
    # jsonschema is imported here, by the suites that use it: its import alone is a tenth of a cached run.
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError
    from referencing import Registry

    schema = json.loads(schema_json)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"the json_schema assertion's schema is not a valid JSON Schema: {exc.message}") from None
    outside = next((ref for ref in _refs(schema) if not ref.startswith("#")), None)
    if outside is not None:
        raise ValueError(f"the json_schema assertion's $ref {clip(repr(outside))} points outside its schema: "
                         "promptops reads no other file or URL (use '#/$defs/...')")
    # An empty registry: without one, jsonschema fetches any other $ref with urllib (http, file://).
    # Format stays an annotation, as draft 2020-12 specifies.
    return _validator_class()(schema, registry=Registry())


def _refs(schema: Any) -> Iterator[str]:
    """Every $ref and $dynamicRef in a schema."""
    for node in _subschemas(schema):
        yield from (value for key, value in node.items() if key in ("$ref", "$dynamicRef") and isinstance(value, str))


def _schema_validator(assertion: dict[str, Any]) -> Draft202012Validator:
    return _validator(json.dumps(assertion["schema"], sort_keys=True))


@lru_cache(maxsize=256)
def _unbounded(schema_json: str) -> bool:
    """jsonschema runs patternProperties' patterns itself, with re, to find unevaluatedProperties."""
    return {"unevaluatedProperties", "patternProperties"} <= _keywords(json.loads(schema_json))


def _json_schema(assertion: dict[str, Any], answer: Answer, value: Any) -> Outcome:
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    parsed = _parse_json(answer.output)
    if isinstance(parsed, Outcome):
        return parsed
    validator = _schema_validator(assertion)
    if _unbounded(json.dumps(assertion["schema"], sort_keys=True)):
        return _outcome(False, "the schema combines unevaluatedProperties with patternProperties, whose patterns "
                               "cannot run under a timeout there: use additionalProperties")
    token = _PATTERN_DEADLINE.set(time.monotonic() + REGEX_TIMEOUT_S)
    try:
        error = best_match(validator.iter_errors(parsed))
    except Unresolvable as exc:  # remote $refs are never fetched
        return _outcome(False, f"the schema's $ref cannot be resolved: {clip(str(exc), 120)}")
    except _PatternTimeout as exc:
        shown = "/" + clip(exc.pattern) + "/"
        return _outcome(False, f"the schema's pattern {shown} took longer than {REGEX_TIMEOUT_S:g} s "
                               f"(catastrophic backtracking?)")
    finally:
        _PATTERN_DEADLINE.reset(token)
    if error is None:
        return _outcome(True, "output matches the schema")
    return _outcome(False, f"output at {_json_path(error.absolute_path)}: {clip(error.message, 120)}")


# -- size, time, money -----------------------------------------------------


def _length(assertion: dict[str, Any], answer: Answer, value: Any) -> Outcome:
    size = len(answer.output.strip())  # a trailing newline is not part of what was said
    low, high = assertion.get("min"), assertion.get("max")
    if low is not None and size < low:
        return _outcome(False, f"output is {size:,} characters, fewer than the minimum {low:,}")
    if high is not None and size > high:
        return _outcome(False, f"output is {size:,} characters, more than the maximum {high:,}")
    return _outcome(True, f"output is {size:,} characters, within bounds")


def _latency_ms(assertion: dict[str, Any], answer: Answer, value: Any) -> Outcome:
    limit = assertion["max"]
    if answer.latency_ms is None:
        # The first call of each process to a provider warms the client up and is not timed: judging
        # it on half a second of imports and connecting would fail a case no prompt change touched.
        return _outcome(True, "latency not timed (the client's warm-up call); not judged")
    if answer.latency_ms > limit:
        return _outcome(False, f"latency {answer.latency_ms:,.0f} ms is over the {limit:,} ms limit")
    return _outcome(True, f"latency {answer.latency_ms:,.0f} ms is within the {limit:,} ms limit")


def _cost_usd(assertion: dict[str, Any], answer: Answer, value: Any) -> Outcome:
    limit = assertion["max"]
    if answer.cost_usd is None:
        return _outcome(False, "cost unknown")
    if answer.cost_usd > limit:
        return _outcome(False, f"cost ${answer.cost_usd:.6g} is over the ${limit:.6g} limit")
    return _outcome(True, f"cost ${answer.cost_usd:.6g} is within the ${limit:.6g} limit")


# -- refusal ---------------------------------------------------------------

_PHRASE = re.compile(r"\b(?:" + "|".join(map(re.escape, REFUSAL_PHRASES)) + r")\b")
_LEAD_INS = ("sorry", "unfortunately", "apologies", "alas", "no", "well", "honestly", "i'm afraid", "i am afraid")
_LEAD_IN = re.compile(r"(?:[\W_]*(?:" + "|".join(map(re.escape, _LEAD_INS)) + r")\b)*[\W_]*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n")
_APOSTROPHES = str.maketrans("’‘ʼ`´", "'''''")


def _refusal(assertion: dict[str, Any], answer: Answer, value: Any) -> Outcome:
    text = answer.output.translate(_APOSTROPHES).casefold()
    opening = _PHRASE.match(text, _LEAD_IN.match(text).end())
    if opening:
        return _outcome(True, f"output refuses: it opens with {_quote(opening.group())}")
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    refusing = [s for s in sentences if _PHRASE.search(" ".join(s.split()))]
    if refusing and 2 * len(refusing) >= len(sentences):
        return _outcome(True, f"output refuses: {len(refusing)} of {len(sentences)} sentences decline")
    return _outcome(False, "output is not a refusal")


# -- the registry ----------------------------------------------------------

_CHECKS: dict[str, Check] = {
    "equals": _equals,
    "contains": _contains,
    "icontains": _icontains,
    "not_contains": _not_contains,
    "regex": _regex,
    "starts_with": _starts_with,
    "is_json": _is_json,
    "json_schema": _json_schema,
    "length": _length,
    "latency_ms": _latency_ms,
    "cost_usd": _cost_usd,
    "refusal": _refusal,
}

DETERMINISTIC: frozenset[str] = frozenset(_CHECKS)
MODEL_JUDGED: frozenset[str] = frozenset({"similar", "llm_rubric", "groundedness", "answer_relevance"})

_TEXT_VALUED = frozenset({"contains", "icontains", "not_contains", "regex", "starts_with"})
_BOUNDS = {"length": ("min", "max"), "latency_ms": ("max",), "cost_usd": ("max",)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) or _is_number(value)


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(map(_is_text, value))


def weight(assertion: dict[str, Any]) -> float:
    """The assertion's weight in its case's score (default 1; 0: informative only)."""
    value = assertion.get("weight", 1)
    if not _is_number(value) or value < 0:
        kind = assertion.get("type")
        raise ValueError(f"a {kind} assertion's weight must be a number >= 0, not {clip(repr(value))}")
    return float(value)


def check(assertion: dict[str, Any]) -> str:
    """The assertion's type, after checking what no answer could fix; raises ValueError.

    Model-judged types pass (they are known); ``evaluate`` refuses them.
    """
    kind = assertion.get("type")
    if not isinstance(kind, str) or kind not in DETERMINISTIC | MODEL_JUDGED:
        known = ", ".join(sorted(DETERMINISTIC | MODEL_JUDGED))
        raise ValueError(f"unknown assertion type {kind!r}; known types: {known}")
    weight(assertion)
    if kind in _TEXT_VALUED or kind == "equals":
        if "value" not in assertion:
            raise ValueError(f"a {kind} assertion needs a value")
        value = assertion["value"]
        if kind in _TEXT_VALUED and not (_is_text(value) or _is_text_list(value)):
            raise ValueError(f"a {kind} assertion's value must be text, a number or a non-empty list of them, "
                             f"not {clip(repr(value))}")
    for name in _BOUNDS.get(kind, ()):
        if name in assertion and not (_is_number(assertion[name]) and assertion[name] >= 0):
            raise ValueError(f"a {kind} assertion's {name} must be a number >= 0, not {clip(repr(assertion[name]))}")
    if kind in _BOUNDS and not any(name in assertion for name in _BOUNDS[kind]):
        raise ValueError(f"a {kind} assertion needs {' or '.join(_BOUNDS[kind])}")
    if kind == "json_schema":
        if not isinstance(assertion.get("schema"), dict):
            raise ValueError("a json_schema assertion needs a schema (an object)")
        _schema_validator(assertion)
    return kind


def render_value(value: Any, variables: dict[str, Any], limits: RenderLimits | None) -> Any:
    """Strings, and strings in a list, rendered as templates; anything else as written."""
    if isinstance(value, list):
        return [render_value(item, variables, limits) for item in value]
    if not isinstance(value, str) or not any(mark in value for mark in ("{{", "{%", "{#")):
        return value  # plain text renders to itself: skip the sandbox
    return render(value, variables, limits)


def evaluate(assertion: dict[str, Any], answer: Answer, variables: dict[str, Any], expected: Any,
             limits: RenderLimits | None = None) -> Outcome:
    """Judge ``answer`` by one deterministic assertion of a case with ``variables`` and ``expected``.

    Raises ValueError for a malformed assertion or a model-judged type.
    """
    kind = check(assertion)
    if kind in MODEL_JUDGED:
        raise ValueError(f"a {kind} assertion needs a model: it is judged with model calls, not here")
    context = {**variables, "vars": variables}
    if expected is not None:
        context["expected"] = expected
    try:
        value = render_value(assertion.get("value"), context, limits)
    except TemplateError as exc:
        return _outcome(False, f"the value template failed: {clip(str(getattr(exc, 'message', None) or exc), 160)}")
    try:
        return _CHECKS[kind](assertion, answer, value)
    except RecursionError:  # JSON nested deeper than Python's stack
        return _outcome(False, "output is nested too deeply to check")


def score_case(outcomes: list[tuple[dict[str, Any], Outcome]], threshold: float) -> tuple[bool, float]:
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
