"""PO2xx: message templates, their variables, and what eval cases give them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jinja2.exceptions import SecurityError

from promptops.findings import Severity
from promptops.lint.project import LintProject
from promptops.lint.registry import Hit, hit, rule
from promptops.specs import EvalCase, EvalSuiteSpec, PromptSpec
from promptops.templating import RenderLimitError, TemplateError, forbidden_attribute, render, sample_inputs


def used_variables(spec: PromptSpec, project: LintProject) -> dict[str, tuple[int, int]]:
    """Every variable the messages read, with the first place in the file it is read."""
    used: dict[str, tuple[int, int]] = {}
    for message in project.messages(spec):
        for name, template_line in message.variables.items():
            used.setdefault(name, message.file_position(template_line))
    return used


def case_hit(case: EvalCase, message: str, *field: Any) -> Hit:
    """A finding at a case: inline cases by JSON path, dataset rows by line."""
    if case.origin.positions.values:
        return hit(case.origin, case.path + tuple(field), message)
    return Hit(case.origin, int(case.path[0]), 1, message)


@rule("PO201", "template-syntax", "prompt")
def template_syntax(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
    """A message is not a valid Jinja template: an unclosed {% for %} or {{,
    an unknown tag, a stray {% endif %}. The message cannot be rendered at all.

    Fails:   content: "{% for p in passages %}{{ p }}"
    Passes:  content: "{% for p in passages %}{{ p }}{% endfor %}"
    """
    for message in project.messages(spec):
        if message.error:
            line, col = message.file_position(message.error[0])
            yield Hit(spec.source, line, col, f"messages[{message.index}]: {message.error[1]}")


@rule("PO202", "undeclared-variable", "prompt")
def undeclared_variable(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
    """A template uses a variable that `inputs` does not declare. Callers are
    validated against `inputs`, so the variable would be undefined at run time
    (templates render with StrictUndefined).

    Fails:   inputs: {properties: {question: ...}}   content: "{{ user_name }}: {{ question }}"
    Passes:  declare user_name under inputs.properties.
    """
    declared = set(spec.declared_inputs)
    for name, (line, col) in sorted(used_variables(spec, project).items()):
        if name not in declared:
            yield Hit(spec.source, line, col, f"variable '{name}' is used but not declared in inputs")


@rule("PO203", "unused-input", "prompt", Severity.WARNING)
def unused_input(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
    """An input is declared but no message uses it: callers must send it and it
    changes nothing, or a template forgot to include it.

    Fails:   inputs.properties has tone; no message mentions {{ tone }}
    Passes:  remove tone, or use it in a message.
    """
    if any(m.tree is None for m in project.messages(spec)):
        return  # a template that does not parse hides what it uses
    used = used_variables(spec, project)
    for name in sorted(spec.declared_inputs):
        if name not in used:
            yield hit(spec.source, ("inputs", "properties", name), f"input '{name}' is declared but never used",
                      key=True)


# What lint renders in place of the passages a retrieval config will give a case that brings none.
RETRIEVED_SAMPLE = ["(a retrieved passage)"]


def retrieved_input(prompt: PromptSpec) -> str | None:
    """The input the prompt's retrieval config fills in an eval case that leaves it out (``retrieval.into``)."""
    return prompt.retrieval_into if prompt.retrieval_config else None


def missing_inputs(prompt: PromptSpec, case: EvalCase) -> list[str]:
    """The required inputs a case gives no value for, but the one retrieval fills."""
    retrieved = retrieved_input(prompt)
    return [name for name in prompt.required_inputs if name not in case.vars and name != retrieved]


@rule("PO204", "case-missing-input", "eval")
def case_missing_input(suite: EvalSuiteSpec, project: LintProject) -> Iterator[Hit]:
    """An eval case does not give a value for an input the prompt requires, so
    the case cannot be rendered. A prompt with `retrieval: {config, into}` is
    the exception for its `into` input: the eval retrieves it for a case that
    brings none.

    Fails:   required: [question, passages]   vars: {question: "..."}
    Passes:  vars: {question: "...", passages: []}
    """
    prompt = project.prompt(suite.prompt)
    if prompt is None:
        return
    for case in suite.cases:
        missing = missing_inputs(prompt, case)
        if missing:
            names = ", ".join(missing)
            yield case_hit(case, f"case '{case.id}' lacks required input(s) {names} of prompt '{prompt.id}'", "vars")


@rule("PO205", "case-render-error", "eval")
def case_render_error(suite: EvalSuiteSpec, project: LintProject) -> Iterator[Hit]:
    """A case's vars make a message fail to render: an attribute its value does
    not have, a filter given the wrong type, a render limit broken, or an access
    the sandbox refuses.

    Fails:   content: "{{ user.name }}"   vars: {user: "Ann"}
    Passes:  vars: {user: {name: "Ann"}}
    """
    prompt = project.prompt(suite.prompt)
    if prompt is None or any(m.tree is None for m in project.messages(prompt)):
        return
    retrieved = retrieved_input(prompt)
    for case in suite.cases:
        if missing_inputs(prompt, case):
            continue  # PO204 already says so
        variables = dict(case.vars)
        if retrieved is not None:
            variables.setdefault(retrieved, RETRIEVED_SAMPLE)
        for index, message in enumerate(prompt.messages):
            try:
                render(message.content, variables, project.render_limits)
            except TemplateError as exc:
                text = f"case '{case.id}' does not render messages[{index}] of '{prompt.id}': {_reason(exc)}"
                yield case_hit(case, text)
                break


@rule("PO206", "unbounded-template", "prompt")
def unbounded_template(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
    """Rendered with sample inputs made from `inputs`, a message breaks a render
    limit (loop iterations, output size, time) or touches what the sandbox
    forbids: it would hang or blow up memory in CI and in production.

    Fails:   "{% for i in range(10**9) %}{{ question }}{% endfor %}"
    Passes:  loops over the inputs, which are bounded by their schema.
    """
    sample = sample_inputs(spec)
    for message in project.messages(spec):
        if message.tree is None or not message.facts.may_amplify:
            continue
        if any(forbidden_attribute(name) for name, _ in message.facts.attributes):
            continue  # PO603 reports it; rendering would only say the same again
        try:
            render(message.source_text, sample, project.render_limits)
        except (RenderLimitError, SecurityError) as exc:
            line, col = spec.source.where(message.path)
            yield Hit(spec.source, line, col, f"messages[{message.index}]: {_reason(exc)}")
        except TemplateError:
            continue  # sample values are guesses: other failures prove nothing


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
