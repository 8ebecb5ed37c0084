"""json_schema: the answer is JSON that satisfies the assertion's JSON Schema (draft 2020-12).

Regex safety. The schema's patterns (``pattern``, ``patternProperties``, and
``additionalProperties`` beside them) run by the ``regex`` module, all of one
assertion within the regex type's REGEX_TIMEOUT_S together; ``uniqueItems`` is checked in linear
time (jsonschema compares objects pairwise). A schema that combines
``unevaluatedProperties`` with ``patternProperties`` fails the assertion
without validating, as jsonschema would run those patterns itself, with ``re``.
A schema that is not a valid JSON Schema, or whose ``$ref`` points outside it,
is a configuration mistake (ValueError): no file or URL is ever read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Hashable, Iterator
from contextvars import ContextVar
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import regex

from promptops.evals.assertions import regex as regex_type  # its timeout, read when the assertion runs
from promptops.evals.assertions._json import parse_json
from promptops.evals.assertions.base import Answer, AssertionResult, AssertionType, clip, outcome
from promptops.specs import Assertion

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator


class JsonSchema(AssertionType):
    name = "json_schema"

    def validate(self, assertion: Assertion) -> None:
        super().validate(assertion)
        if not isinstance(assertion.schema, dict):
            raise ValueError("a json_schema assertion needs a schema (an object)")
        _schema_validator(assertion)

    def assess(self, assertion: Assertion, answer: Answer, value: Any) -> AssertionResult:
        from jsonschema.exceptions import best_match
        from referencing.exceptions import Unresolvable

        parsed = parse_json(answer.output)
        if isinstance(parsed, AssertionResult):
            return parsed
        validator = _schema_validator(assertion)
        if _unbounded(json.dumps(assertion.schema, sort_keys=True)):
            return outcome(False, "the schema combines unevaluatedProperties with patternProperties, whose patterns "
                                  "cannot run under a timeout there: use additionalProperties")
        token = _PATTERN_DEADLINE.set(time.monotonic() + regex_type.REGEX_TIMEOUT_S)
        try:
            error = best_match(validator.iter_errors(parsed))
        except Unresolvable as exc:  # remote $refs are never fetched
            return outcome(False, f"the schema's $ref cannot be resolved: {clip(str(exc), 120)}")
        except _PatternTimeout as exc:
            shown = "/" + clip(exc.pattern) + "/"
            return outcome(False, f"the schema's pattern {shown} took longer than {regex_type.REGEX_TIMEOUT_S:g} s "
                                  f"(catastrophic backtracking?)")
        finally:
            _PATTERN_DEADLINE.reset(token)
        if error is None:
            return outcome(True, "output matches the schema")
        return outcome(False, f"output at {_json_path(error.absolute_path)}: {clip(error.message, 120)}")


TYPE = JsonSchema()


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
    remaining = regex_type.REGEX_TIMEOUT_S if deadline is None else deadline - time.monotonic()
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


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any,
                        schema: dict[str, Any]) -> Iterator[Any]:
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
    validator: Draft202012Validator = _validator_class()(schema, registry=Registry())
    return validator


def _refs(schema: Any) -> Iterator[str]:
    """Every $ref and $dynamicRef in a schema."""
    for node in _subschemas(schema):
        yield from (value for key, value in node.items() if key in ("$ref", "$dynamicRef") and isinstance(value, str))


def _schema_validator(assertion: Assertion) -> Draft202012Validator:
    return _validator(json.dumps(assertion.schema, sort_keys=True))


@lru_cache(maxsize=256)
def _unbounded(schema_json: str) -> bool:
    """jsonschema runs patternProperties' patterns itself, with re, to find unevaluatedProperties."""
    return {"unevaluatedProperties", "patternProperties"} <= _keywords(json.loads(schema_json))
