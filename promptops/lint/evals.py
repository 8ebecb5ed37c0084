"""PO5xx: eval suites, their cases, datasets and assertions."""

from __future__ import annotations

import difflib
import re
import textwrap
from collections.abc import Iterator
from typing import Any

from promptops import resources
from promptops.codes import DATASET_INVALID, DATASET_MISSING, UNKNOWN_ASSERTION_TYPE
from promptops.findings import Severity
from promptops.lint.project import LintProject
from promptops.lint.registry import Hit, hit, loader_rule, rule
from promptops.lint.templates import case_hit
from promptops.specs import Assertion, EvalCase, EvalSuiteSpec
from promptops.templating import TemplateError, parse

# The schema's list of types, which tests/evals/test_assertions.py holds to the registry's (importing the registry here
# would put every type's imports on the commit hook's path).
_KNOWN_TYPES = resources.schema("eval")["$defs"]["assertion"]["properties"]["type"]["enum"]
loader_rule(UNKNOWN_ASSERTION_TYPE, "unknown-assertion-type", textwrap.fill(
    "An assertion's type is not one promptops knows; the message suggests the closest. "
    f"Known: {', '.join(_KNOWN_TYPES)}.", 76) + """

Fails:   assert: [{type: contain, value: "30 days"}]
Passes:  assert: [{type: contains, value: "30 days"}]
""")
loader_rule(DATASET_MISSING, "dataset-missing", """
    The suite's dataset file does not exist, is not .jsonl, .csv or .yaml, or
    lies outside the repository (an absolute path or ../ that leaves it: a
    suite must not read files the repository does not hold).

    Fails:   dataset: ../../secrets.jsonl
    Passes:  dataset: data/support_answer.jsonl
""")
loader_rule(DATASET_INVALID, "dataset-invalid", """
    A row of the dataset is not a valid case: a line that is not JSON, a row
    without an id, or vars that are not an object. The finding names the line.
    Also a dataset over 100,000 rows, or a CSV header over 1,000 columns: the
    rest is not read.

    Fails:   {"id": "a", "vars": {"question": "hi"}      (unclosed)
    Passes:  {"id": "a", "vars": {"question": "hi"}, "expected": "hello"}
""")


@rule("PO501", "unknown-prompt", "eval")
def unknown_prompt(suite: EvalSuiteSpec, project: LintProject) -> Iterator[Hit]:
    """The suite tests a prompt id that no *.prompt.yaml in the project defines.

    Fails:   prompt: support.answr
    Passes:  prompt: support.answer
    """
    if project.prompt(suite.prompt) is None:
        known = project.known_ids("prompt")
        close = difflib.get_close_matches(suite.prompt, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        yield hit(suite.source, ("prompt",), f"no prompt has id '{suite.prompt}'{hint}")


@rule("PO502", "duplicate-case-id", "eval")
def duplicate_case_id(suite: EvalSuiteSpec, project: LintProject) -> Iterator[Hit]:
    """Two cases in one suite (inline or from the dataset) share an id. Results
    are compared base to head by case id, so ids must be unique.

    Fails:   cases: [{id: refund, ...}, {id: refund, ...}]
    Passes:  cases: [{id: refund-window, ...}, {id: refund-method, ...}]
    """
    seen: dict[str, EvalCase] = {}
    for case in suite.cases:
        first = seen.setdefault(case.id, case)
        if first is not case:
            yield case_hit(case, f"case id '{case.id}' is used twice (first at {_where(first)})", "id")


@rule("PO506", "empty-suite", "eval", Severity.WARNING)
def empty_suite(suite: EvalSuiteSpec, project: LintProject) -> Iterator[Hit]:
    """The suite has no cases once its dataset is read, so it measures nothing.

    Fails:   dataset: data/empty.jsonl   and no cases:
    Passes:  at least one case.
    """
    if not suite.cases and suite.dataset_readable:
        yield hit(suite.source, ("dataset",) if suite.dataset else (), "the suite has no cases")


@rule("PO507", "assertion-template", "eval")
def assertion_template(suite: EvalSuiteSpec, project: LintProject) -> Iterator[Hit]:
    """An assertion value is a template over the case's vars and expected, and
    it does not parse.

    Fails:   {type: contains, value: "{{ expected }"}
    Passes:  {type: contains, value: "{{ expected }}"}
    """
    for where, assertion in _assertions(suite):
        value = assertion.value
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            try:
                parse(value)
            except TemplateError as exc:
                yield where(f"assertion value is not a valid template: {getattr(exc, 'message', exc)}")


@rule("PO508", "invalid-regex", "eval")
def invalid_regex(suite: EvalSuiteSpec, project: LintProject) -> Iterator[Hit]:
    """A regex assertion's pattern does not compile.

    Fails:   {type: regex, value: "30 (days"}
    Passes:  {type: regex, value: "30 \\\\(days\\\\)"}
    """
    for where, assertion in _assertions(suite):
        value = assertion.value
        if assertion.type == "regex" and isinstance(value, str) and "{{" not in value:
            try:
                re.compile(value)
            except re.error as exc:
                yield where(f"regex does not compile: {exc}")


@rule("PO509", "invalid-assertion", "eval")
def invalid_assertion(suite: EvalSuiteSpec, project: LintProject) -> Iterator[Hit]:
    """An assertion no answer could pass as written: a json_schema assertion
    whose schema is not a valid JSON Schema (draft 2020-12), or a bound or
    weight that is not a number >= 0. Eval would fail every case it is in.

    Fails:   {type: json_schema, schema: {type: nonsense}}
    Passes:  {type: json_schema, schema: {type: object, required: [answer]}}
    """
    from promptops.evals.assertions import DETERMINISTIC, validated_type  # the regex module: only for suites

    for where, assertion in _assertions(suite):
        # An unknown type is PO503's; a judge's and a template's value are known only per case.
        if assertion.type not in DETERMINISTIC or _templated(assertion.value):
            continue
        try:
            validated_type(assertion)
        except ValueError as exc:
            yield where(str(exc))


def _templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _assertions(suite: EvalSuiteSpec) -> Iterator[tuple[Any, Assertion]]:
    """Each assertion of the suite with a function that makes a Hit at it."""
    for i, assertion in enumerate(suite.default_assert):
        yield (lambda text, i=i: hit(suite.source, ("default_assert", i), text)), assertion
    for case in suite.cases:
        for i, assertion in enumerate(case.asserts):
            yield (lambda text, case=case, i=i: case_hit(case, text, "assert", i)), assertion


def _where(case: EvalCase) -> str:
    line = case.origin.where(case.path)[0] if case.origin.positions.values else case.path[0]
    return f"{case.origin.display}:{line}"
