"""`promptops render`: the exact messages a prompt would send, as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click

from promptops.commands.output import write_report
from promptops.errors import UsageError


@click.command()
@click.argument("prompt_id")
@click.option("--vars", "vars_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A JSON or YAML file with the variables (a mapping).")
@click.option("--var", "pairs", multiple=True, metavar="NAME=VALUE",
              help="One variable (repeatable; overrides --vars). A VALUE that is JSON is used as such "
                   "(a list, number, object, true/false/null); anything else is a string. Quote JSON to force "
                   "a string: --var 'n=\"3\"'.")
def render(prompt_id: str, vars_file: Path | None, pairs: tuple[str, ...]) -> None:
    """Print the exact messages PROMPT_ID would send, as JSON (model, params, messages).

    Variables are validated against the prompt's inputs schema and rendered
    in the bounded sandbox. Exit 2 when the prompt, the variables or the
    template cannot be used.

    \b
    Examples:
      promptops render support.answer --vars case.yaml
      promptops render support.answer --var question='Where is my refund?' --var 'passages=["Refunds take 5 days."]'
    """
    from promptops.config import load_workspace
    from promptops.templating import InputError, RenderLimits, TemplateError, render_messages, validate_inputs

    workspace = load_workspace(Path.cwd())
    spec = workspace.prompts.get(prompt_id)
    if spec is None:
        known = ", ".join(sorted(workspace.prompts)) or "none"
        raise UsageError(f"no prompt has id '{prompt_id}' (known: {known})")
    variables = _read_vars(vars_file) if vars_file else {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--var")
        variables[name] = _var_value(value)
    limits = RenderLimits.from_config(workspace.config.lint.render_limits)
    try:
        validate_inputs(spec, variables)
        messages = render_messages(spec, variables, limits)
    except (InputError, TemplateError) as exc:
        raise UsageError(f"{spec.source.display}: {getattr(exc, 'message', None) or exc}") from exc
    document = {"id": spec.id, "version": spec.version, "model": spec.model, "params": spec.params,
                "messages": messages}
    write_report(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "json", None)


def _var_value(text: str) -> object:
    """A --var value: what it means as JSON (a list, a number, an object, true, false, null), else the text itself,
    so that --var city=Paris needs no quotes. NaN and Infinity are not JSON and stay text."""
    def not_json(constant: str) -> object:
        raise ValueError(constant)

    try:
        return json.loads(text, parse_constant=not_json)
    except (ValueError, RecursionError):
        return text


def _read_vars(path: Path) -> dict[str, object]:
    """Variables from a JSON or YAML file, through the same safe reader as every spec."""
    from promptops.loader import read_text
    from promptops.yamlparse import YamlError, parse

    text, problem = read_text(path, path.parent, str(path))
    if problem:
        raise UsageError(str(problem))
    try:
        data, _ = parse(text or "")  # JSON is YAML
    except YamlError as exc:
        raise UsageError(f"{path}:{exc.line}:{exc.col}: {exc.message}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the variables must be a mapping of names to values")
    return data
