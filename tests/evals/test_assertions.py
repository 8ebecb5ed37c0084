"""Deterministic assertions (promptops.evals.assertions): every type passing and failing with its
reason, values as templates over vars and expected, weights and thresholds, and hostile input
(sandbox escapes, runaway templates, catastrophic regexes) failing quickly, never raising."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from promptops import resources
from promptops.evals.assertions import (
    DETERMINISTIC,
    MODEL_JUDGED,
    TYPES,
    Answer,
    Assertion,
    AssertionResult,
    JudgedType,
    evaluate,
    regex as regex_type,
    score_case,
    validated_type,
)
from promptops.evals.assertions.refusal import REFUSAL_PHRASES
from promptops.evals.assertions.regex import MAX_PATTERN_CHARS, MAX_SCAN_CHARS
from promptops.templating import RenderLimits

# CPU seconds (time.process_time): a runaway match or render burns CPU, which the other work of a busy machine
# does not add to; the wall-clock deadlines only stop the work earlier there.
MAX_SECONDS = 5.0  # render deadline 2 s and regex timeout 1 s, plus slack


def judge(assertion: dict[str, Any], output: str = "", variables: dict[str, Any] | None = None,
          expected: Any = None, latency_ms: float | None = 100.0, cost_usd: float | None = 0.001,
          limits: RenderLimits | None = None) -> AssertionResult:
    answer = Answer(output, latency_ms, cost_usd)
    return evaluate(Assertion.from_dict(assertion), answer, variables or {}, expected, limits)


def passes(assertion: dict[str, Any], output: str = "", **kwargs: Any) -> AssertionResult:
    outcome = judge(assertion, output, **kwargs)
    assert outcome.passed and outcome.score == 1.0, outcome
    return outcome


def fails(assertion: dict[str, Any], output: str = "", **kwargs: Any) -> AssertionResult:
    outcome = judge(assertion, output, **kwargs)
    assert not outcome.passed and outcome.score == 0.0, outcome
    return outcome


def test_the_types_are_the_schemas() -> None:
    """A new type is its module; the schema's enum (what editors offer and PO503 reads) must list it too."""
    enum = resources.schema("eval")["$defs"]["assertion"]["properties"]["type"]["enum"]
    assert set(TYPES) == set(enum)
    assert set(TYPES) == DETERMINISTIC | MODEL_JUDGED and not DETERMINISTIC & MODEL_JUDGED


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_the_schema_requires_what_the_type_needs(kind: str) -> None:
    """An assertion of just a type is schema-valid exactly when its type's validate accepts it: the schema's
    required keys (value, schema, min or max) are the type's."""
    from jsonschema import Draft202012Validator

    suite = resources.schema("eval")
    validator = Draft202012Validator({"$defs": suite["$defs"], "$ref": "#/$defs/assertion"})
    try:
        validated_type(Assertion.from_dict({"type": kind}))
        needs = None
    except ValueError as exc:
        needs = str(exc)
    assert validator.is_valid({"type": kind}) == (needs is None), needs


def test_po503_lists_the_registered_types() -> None:
    from promptops.lint.registry import all_rules

    explain = " ".join(all_rules()["PO503"].doc.split())
    listed = explain.split("Known: ", 1)[1].split(".", 1)[0]
    assert set(listed.split(", ")) == set(TYPES)


def test_a_type_module_is_named_after_its_type() -> None:
    for name, kind in TYPES.items():
        assert type(kind).__module__ == f"promptops.evals.assertions.{name}"
        assert kind.judged == isinstance(kind, JudgedType)


# -- text ------------------------------------------------------------------


def test_equals_strips_surrounding_whitespace_only() -> None:
    assert passes({"type": "equals", "value": "Paris"}, "  Paris\n").reason == "output equals 'Paris'"
    assert fails({"type": "equals", "value": "Paris"}, "paris").reason == "output is 'paris', not 'Paris'"
    fails({"type": "equals", "value": "Paris"}, "Paris, France")


def test_equals_with_a_non_string_value_compares_json() -> None:
    passes({"type": "equals", "value": 42}, "42")
    passes({"type": "equals", "value": 42}, "42.0")
    passes({"type": "equals", "value": {"label": "spam", "tags": [1, 2]}}, '{"tags": [1, 2], "label": "spam"}')
    passes({"type": "equals", "value": True}, "```json\ntrue\n```")
    fails({"type": "equals", "value": 1}, "true")  # Python says True == 1; JSON does not
    fails({"type": "equals", "value": {"label": "spam"}}, '{"label": "ham"}')
    assert "not valid JSON" in fails({"type": "equals", "value": [1]}, "one").reason


def test_contains() -> None:
    assert passes({"type": "contains", "value": "30 days"}, "Within 30 days.").reason == "output contains '30 days'"
    outcome = fails({"type": "contains", "value": "30 days"}, "Within 30 Days.")
    assert outcome.reason == "output does not contain '30 days'"


def test_contains_a_list_needs_every_item_and_numbers_are_text() -> None:
    passes({"type": "contains", "value": ["30 days", "receipt", 30]}, "Within 30 days, with a receipt.")
    outcome = fails({"type": "contains", "value": ["30 days", "receipt"]}, "Within 30 days.")
    assert outcome.reason == "output does not contain 'receipt'"


def test_icontains_casefolds() -> None:
    passes({"type": "icontains", "value": "STRASSE"}, "Hauptstraße 5")
    outcome = fails({"type": "icontains", "value": "refund"}, "No.")
    assert outcome.reason == "output does not contain 'refund' (ignoring case)"


def test_not_contains() -> None:
    passes({"type": "not_contains", "value": "As an AI"}, "Refunds take 30 days.")
    assert fails({"type": "not_contains", "value": ["guarantee", "30"]}, "30 days").reason == "output contains '30'"


def test_starts_with_after_leading_whitespace() -> None:
    passes({"type": "starts_with", "value": "Yes"}, "\n  Yes, you can.")
    outcome = fails({"type": "starts_with", "value": "Yes"}, "No, you can't.")
    assert outcome.reason == "output starts with 'No,', not 'Yes'"
    passes({"type": "starts_with", "value": ["Yes", "No"]}, "No, you can't.")  # a list: any opening


def test_regex() -> None:
    outcome = passes({"type": "regex", "value": r"\b\d+ days\b"}, "within 30 days")
    assert outcome.reason == r"output matches /\b\d+ days\b/"
    assert fails({"type": "regex", "value": r"^\d+$"}, "30 days").reason == r"output does not match /^\d+$/"
    passes({"type": "regex", "value": [r"\d+ days", "(?i)receipt"]}, "30 days, Receipt")
    fails({"type": "regex", "value": [r"\d+ days", "receipt"]}, "30 days")


def test_invalid_regex_fails_with_the_error() -> None:
    outcome = fails({"type": "regex", "value": "30 (days"}, "30 (days")
    assert outcome.reason.startswith("regex /30 (days/ is invalid: missing ), unterminated subpattern")


def test_regex_refuses_long_patterns() -> None:
    outcome = fails({"type": "regex", "value": "a" * (MAX_PATTERN_CHARS + 1)}, "a" * 2000)
    assert f"is longer than {MAX_PATTERN_CHARS:,} characters" in outcome.reason


def test_catastrophic_regex_times_out_as_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(regex_type, "REGEX_TIMEOUT_S", 0.2)  # without a timeout this match runs for hours
    start = time.process_time()
    outcome = fails({"type": "regex", "value": "(a|aa)+$"}, "a" * 60 + "b")
    assert time.process_time() - start < MAX_SECONDS
    assert outcome.reason == "regex /(a|aa)+$/ took longer than 0.2 s (catastrophic backtracking?)"


def test_regex_scans_a_bounded_prefix() -> None:
    output = "x" * MAX_SCAN_CHARS + "needle"
    assert fails({"type": "regex", "value": "needle"}, output).reason.endswith(
        f"in the first {MAX_SCAN_CHARS:,} characters")
    passes({"type": "contains", "value": "needle"}, output)  # plain text checks read it all


# -- values as templates ---------------------------------------------------


def test_values_render_over_vars_and_expected() -> None:
    variables = {"city": "Paris", "passages": ["Refunds within 30 days."]}
    passes({"type": "contains", "value": "{{ expected }}"}, "It takes 30 days.", expected="30 days")
    passes({"type": "contains", "value": "{{ city }}"}, "In Paris.", variables=variables)
    passes({"type": "contains", "value": "{{ vars.city | upper }}"}, "IN PARIS.", variables=variables)
    passes({"type": "equals", "value": "{{ passages[0] }}"}, "Refunds within 30 days.", variables=variables)
    passes({"type": "contains", "value": ["{{ city }}", "{{ expected }}"]}, "Paris: 30 days",
           variables=variables, expected="30 days")
    passes({"type": "regex", "value": r"^{{ expected }}\d{2}$"}, "A-12", expected="A-")
    passes({"type": "contains", "value": "{{ expected }}"}, "in 30 days", expected=30)


def test_a_case_without_expected_leaves_it_undefined() -> None:
    outcome = fails({"type": "contains", "value": "{{ expected }}"}, "None")
    assert outcome.reason == "the value template failed: 'expected' is undefined"


def test_a_value_template_that_fails_is_a_failed_outcome() -> None:
    assert fails({"type": "contains", "value": "{{ missing }}"}, "x").reason == \
        "the value template failed: 'missing' is undefined"
    assert fails({"type": "contains", "value": "{{ expected }"}, "x").reason.startswith("the value template failed:")
    assert fails({"type": "contains", "value": "{{ 1 / 0 }}"}, "x").reason.startswith("the value template failed:")


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ expected.__class__ }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "{{ 'x' * 1000000000 }}",
    "{{ 9 ** (9 ** 9) }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{{ range(10 ** 12) | list }}",
])
def test_hostile_value_templates_fail_quickly(template: str) -> None:
    start = time.process_time()
    outcome = fails({"type": "contains", "value": template}, "x", expected="30 days")
    assert time.process_time() - start < MAX_SECONDS
    assert outcome.reason.startswith("the value template failed:")
    assert len(outcome.reason) < 200


def test_render_limits_are_passed_on() -> None:
    limits = RenderLimits(max_steps=10)
    fails({"type": "contains", "value": "{% for i in range(20) %}{% endfor %}"}, "", limits=limits)
    passes({"type": "contains", "value": "{% for i in range(20) %}{% endfor %}"}, "")


# -- JSON ------------------------------------------------------------------


@pytest.mark.parametrize("output", [
    '{"a": 1}',
    '  [1, 2]\n',
    '```json\n{"a": 1}\n```',
    '```JSON\n{"a": 1}```',
    '```\n{"a": 1}\n```\n',
])
def test_is_json_tolerates_a_fence(output: str) -> None:
    assert passes({"type": "is_json"}, output).reason == "output is valid JSON"


@pytest.mark.parametrize("output", [
    "{'a': 1}",
    'Here it is: {"a": 1}',
    'Here it is:\n```json\n{"a": 1}\n```',
    "NaN",
    "",
    "1" * 5000,
])
def test_is_json_fails(output: str) -> None:
    assert fails({"type": "is_json"}, output).reason.startswith("output is not valid JSON: ")


def test_deeply_nested_json_is_a_failure_not_a_crash() -> None:
    fails({"type": "is_json"}, "[" * 100_000 + "]" * 100_000)
    fails({"type": "equals", "value": [1]}, "[" * 100_000 + "]" * 100_000)


SCHEMA = {
    "type": "object",
    "required": ["label", "items"],
    "properties": {
        "label": {"enum": ["spam", "ham"]},
        "items": {"type": "array", "items": {"type": "object", "properties": {"price": {"type": "number"}}}},
    },
}


def test_json_schema() -> None:
    assertion = {"type": "json_schema", "schema": SCHEMA}
    passes(assertion, '```json\n{"label": "spam", "items": [{"price": 2}]}\n```')
    outcome = fails(assertion, '{"label": "spam", "items": [{"price": 2}, {"price": "3"}]}')
    assert outcome.reason == "output at $.items[1].price: '3' is not of type 'number'"
    outcome = fails(assertion, '{"label": "eggs", "items": []}')
    assert outcome.reason.startswith("output at $.label: 'eggs' is not one of")
    assert fails(assertion, "[]").reason == "output at $: [] is not of type 'object'"
    assert fails(assertion, "not json").reason.startswith("output is not valid JSON")


@pytest.mark.parametrize("ref", ["https://example.invalid/s.json", "file:///etc/passwd", "other.json#/x", "s.json"])
def test_json_schema_refuses_a_ref_that_leaves_the_schema(ref: str) -> None:
    """jsonschema fetches any $ref it is not given (http, file://): no answer can pass such an assertion."""
    with pytest.raises(ValueError, match="points outside its schema"):
        judge({"type": "json_schema", "schema": {"properties": {"a": {"$ref": ref}}}}, "{}")


def test_json_schema_follows_refs_inside_the_schema() -> None:
    assertion = {"type": "json_schema", "schema": {"$defs": {"name": {"type": "string"}}, "$ref": "#/$defs/name"}}
    passes(assertion, '"ada"')
    assert fails(assertion, "1").reason == "output at $: 1 is not of type 'string'"


def test_json_schema_patterns_keep_their_meaning() -> None:
    schema = {"type": "object", "properties": {"id": {"type": "string", "pattern": "^[a-z]+-\\d+$"}},
              "patternProperties": {"^x-": {"type": "integer"}}, "additionalProperties": False,
              "propertyNames": {"pattern": "^[a-z-]+$"}}
    assertion = {"type": "json_schema", "schema": schema}
    passes(assertion, '{"id": "case-12", "x-count": 3}')
    assert fails(assertion, '{"id": "Case-12"}').reason == "output at $.id: 'Case-12' does not match '^[a-z]+-\\\\d+$'"
    assert fails(assertion, '{"x-count": "3"}').reason == "output at $.x-count: '3' is not of type 'integer'"
    assert fails(assertion, '{"other": 1}').reason == "output at $: 'other' matches none of the patterns '^x-'"
    assert fails(assertion, '{"x_1": 1}').reason.startswith("output at $: 'x_1' does not match")
    typed = {"type": "json_schema",
             "schema": {"patternProperties": {"^a": {}}, "additionalProperties": {"type": "string"}}}
    passes(typed, '{"a1": 1, "b": "text"}')
    assert fails(typed, '{"b": 2}').reason == "output at $.b: 2 is not of type 'string'"


def test_a_catastrophic_schema_pattern_times_out_as_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(regex_type, "REGEX_TIMEOUT_S", 0.2)
    schema = {"type": "array", "items": {"type": "string", "pattern": "(a|aa)+$"}}
    start = time.process_time()
    outcome = fails({"type": "json_schema", "schema": schema}, json.dumps(["a" * 60 + "b"] * 20))
    assert time.process_time() - start < 0.2 + 1  # one budget for the assertion, not one per string
    assert outcome.reason == "the schema's pattern /(a|aa)+$/ took longer than 0.2 s (catastrophic backtracking?)"
    keys = {"type": "json_schema", "schema": {"patternProperties": {"(a|aa)+$": {}}}}
    assert "took longer than 0.2 s" in fails(keys, json.dumps({"a" * 60 + "b": 1})).reason


def test_unevaluated_properties_beside_pattern_properties_fail_without_running_them() -> None:
    schema = {"patternProperties": {"(a|aa)+$": {}}, "unevaluatedProperties": False}
    outcome = fails({"type": "json_schema", "schema": schema}, json.dumps({"a" * 60 + "b": 1}))
    assert outcome.reason.startswith("the schema combines unevaluatedProperties with patternProperties")
    passes({"type": "json_schema", "schema": {"properties": {"a": {}}, "unevaluatedProperties": False}}, '{"a": 1}')


@pytest.mark.parametrize("output, unique", [
    ('[1, 2, "1", true, null, [1], {"a": 1}]', True),
    ('[1, 1.0]', False),  # JSON numbers: 1 and 1.0 are the same value
    ('[1, true]', True),
    ('[0, false]', True),
    ('[{"a": 1, "b": [2]}, {"b": [2], "a": 1}]', False),  # key order does not matter
    ('[[1, 2], [2, 1]]', True),
    ('[{"a": 1}, {"a": 1.0}]', False),
])
def test_unique_items_as_json_compares(output: str, unique: bool) -> None:
    assertion = {"type": "json_schema", "schema": {"type": "array", "uniqueItems": True}}
    if unique:
        passes(assertion, output)
    else:
        assert "non-unique elements" in fails(assertion, output).reason


def test_an_invalid_json_schema_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        judge({"type": "json_schema", "schema": {"type": "banana"}}, "{}")
    with pytest.raises(ValueError, match="needs a schema"):
        judge({"type": "json_schema"}, "{}")


# -- size, time, money -----------------------------------------------------


def test_length() -> None:
    passes({"type": "length", "min": 2, "max": 5}, "abc\n")
    assert fails({"type": "length", "max": 5}, "abcdefg").reason == "output is 7 characters, more than the maximum 5"
    assert fails({"type": "length", "min": 5}, " ab ").reason == "output is 2 characters, fewer than the minimum 5"
    passes({"type": "length", "min": 3}, "日本語")  # characters, not bytes


def test_latency() -> None:
    assertion = {"type": "latency_ms", "max": 3000}
    assert passes(assertion, latency_ms=1200).reason == "latency 1,200 ms is within the 3,000 ms limit"
    assert fails(assertion, latency_ms=4500.4).reason == "latency 4,500 ms is over the 3,000 ms limit"
    assert "not judged" in passes({"type": "latency_ms", "max": 3000}, latency_ms=None).reason


def test_cost() -> None:
    passes({"type": "cost_usd", "max": 0.002}, cost_usd=0.0015)
    assert fails({"type": "cost_usd", "max": 0.002}, cost_usd=0.0025).reason == "cost $0.0025 is over the $0.002 limit"
    assert fails({"type": "cost_usd", "max": 0.002}, cost_usd=None).reason == "cost unknown"


# -- refusal ---------------------------------------------------------------


@pytest.mark.parametrize("output", [
    "I can't help with that.",
    "I’m sorry, but I cannot share that.",
    "  **I don't know.**",
    "Sorry, I'm unable to answer questions about the weather.",
    "Unfortunately, I do not know the answer. The passages only cover refunds.",
    "I'm afraid I don't have enough information to answer.",
    "As an AI, I have no opinions on this.",
    "The passages do not mention the weather in Paris. I don't know.",
    "The passages cover refunds, not weather, so I don't know.",
])
def test_refusals(output: str) -> None:
    assert passes({"type": "refusal"}, output).reason.startswith("output refuses:")


@pytest.mark.parametrize("output", [
    "Refunds are accepted within 30 days of purchase.",
    "I'm afraid refunds are only accepted within 30 days.",
    "Sorry for the wait! Refunds are accepted within 30 days. Keep your receipt. Contact support to start one.",
    "Refunds take 30 days. Keep the receipt. Start one online. I can't stress enough how useful receipts are.",
    "The taxi cannot wait, but refunds take 30 days.",  # phrases match whole words
    "",
])
def test_not_refusals(output: str) -> None:
    assert fails({"type": "refusal"}, output).reason == "output is not a refusal"


def test_refusal_phrases_are_normalised() -> None:
    for phrase in REFUSAL_PHRASES:
        assert phrase == phrase.casefold() and "’" not in phrase
        passes({"type": "refusal"}, phrase.upper() + " anything.")


# -- config errors ---------------------------------------------------------


def test_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(ValueError) as error:
        judge({"type": "contain", "value": "x"}, "x")
    assert "unknown assertion type 'contain'" in str(error.value)
    assert all(kind in str(error.value) for kind in DETERMINISTIC | MODEL_JUDGED)


@pytest.mark.parametrize("kind", sorted(MODEL_JUDGED))
def test_model_judged_types_need_a_model(kind: str) -> None:
    with pytest.raises(ValueError, match="needs a model"):
        judge({"type": kind, "value": "x"}, "x")


@pytest.mark.parametrize("assertion, message", [
    ({"type": "contains"}, "needs a value"),
    ({"type": "contains", "value": {"a": 1}}, "must be text, a number or a non-empty list"),
    ({"type": "contains", "value": []}, "non-empty list"),
    ({"type": "regex", "value": True}, "must be text"),
    ({"type": "length"}, "needs min or max"),
    ({"type": "latency_ms"}, "needs max"),
    ({"type": "cost_usd", "max": "1"}, "max must be a number"),
    ({"type": "contains", "value": "x", "weight": -1}, "weight must be a number >= 0"),
])
def test_malformed_assertions_raise(assertion: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        judge(assertion, "x")


# -- scoring a case --------------------------------------------------------

PASS, FAIL = AssertionResult(True, 1.0, "ok"), AssertionResult(False, 0.0, "no")
written = Assertion.from_dict


def test_threshold_one_needs_every_weighted_assertion() -> None:
    assert score_case([(written({"type": "contains"}), PASS), (written({"type": "regex"}), PASS)], 1.0) == (True, 1.0)
    assert score_case([(written({"type": "contains"}), PASS), (written({"type": "regex"}), FAIL)], 1.0) == (False, 0.5)


def test_weights() -> None:
    outcomes = [(written({"type": "contains", "weight": 3}), PASS), (written({"type": "regex"}), FAIL)]
    assert score_case(outcomes, 0.75) == (True, 0.75)
    assert score_case(outcomes, 0.8) == (False, 0.75)
    assert score_case(outcomes, 1.0) == (False, 0.75)


def test_weight_zero_is_informative_only() -> None:
    outcomes = [(written({"type": "contains"}), PASS), (written({"type": "latency_ms", "weight": 0}), FAIL)]
    assert score_case(outcomes, 1.0) == (True, 1.0)
    assert score_case([(written({"type": "latency_ms", "weight": 0}), FAIL)], 1.0) == (True, 1.0)
    assert score_case([], 1.0) == (True, 1.0)


def test_threshold_one_counts_passes_not_scores() -> None:
    judged = AssertionResult(True, 0.9, "supported")  # a judge that passed its own threshold of 0.8
    outcomes = [(written({"type": "contains"}), PASS), (written({"type": "groundedness"}), judged)]
    passed, score = score_case(outcomes, 1.0)
    assert passed and score == pytest.approx(0.95)


def test_fractional_weights_reach_their_threshold() -> None:
    tenth = [written({"type": "contains", "weight": 0.1})] * 9 + [written({"type": "regex", "weight": 0.1})]
    outcomes = list(zip(tenth, [PASS] * 9 + [FAIL]))
    assert score_case(outcomes, 0.9)[0]


def test_score_case_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="threshold"):
        score_case([], 1.5)
    with pytest.raises(ValueError, match="weight"):
        score_case([(written({"type": "contains", "weight": "heavy"}), PASS)], 1.0)


def test_outcomes_are_json_friendly() -> None:
    outcome = judge({"type": "contains", "value": "a"}, "abc")
    assert json.loads(json.dumps(outcome.__dict__)) == {"passed": True, "score": 1.0, "reason": "output contains 'a'"}
