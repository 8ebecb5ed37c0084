"""How a command shows its report: one way to pick a renderer for --format, one way to write --output."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import click

from promptops.errors import UsageError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])


@dataclass(frozen=True)
class View:
    """What a renderer may need besides the report: the options a user chose, the refs' names."""

    color: bool = False
    show_all: bool = False
    base_label: str | None = None
    head_label: str = ""


def format_option(renderers: Mapping[str, object], default: str | None,
                  help: str | None = "Report format.") -> Callable[[F], F]:
    """--format, whose choices are the renderers' names."""
    return click.option("--format", "fmt", type=click.Choice(list(renderers)), default=default,
                        show_default=default is not None, help=help)


def output_option(help: str = "Write the report here.") -> Callable[[F], F]:
    return click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help=help)


def render(renderers: Mapping[str, Callable[[T, View], str]], fmt: str, report: T, view: View = View()) -> str:
    """``report`` rendered as --format ``fmt`` asks."""
    return renderers[fmt](report, view)


def write_report(text: str, fmt: str, output: Path | None, color: bool | None = None,
                 cannot_write: Callable[[Path, OSError], str] | None = None) -> None:
    """--output: the report written to that file, else printed inert (see ``inert_stdout``); ``color`` is
    click's (None: styles kept on a terminal only)."""
    if output is None:
        click.echo(inert_stdout(text, fmt), nl=False, color=color)
    else:
        write_file(output, text, cannot_write)


def write_file(path: Path, text: str, cannot_write: Callable[[Path, OSError], str] | None = None) -> None:
    """A file the user named: one that cannot be written is a usage error (2) that names it, not a traceback."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError((cannot_write or _cannot_write)(path, exc)) from exc


def _cannot_write(path: Path, exc: OSError) -> str:
    return f"cannot write {path}: {exc.strerror or exc}"


def inert_stdout(text: str, fmt: str) -> str:
    """A report that quotes pull-request content (file names, YAML keys, templates, model answers),
    unable to start a workflow command when it is printed in an Actions log.

    JSON keeps its exact value: a "[" after "##" is written as the escape \\u005b. Lint's github
    format is workflow commands by design, its data already escaped.
    """
    from promptops.report.safety import inert_log

    if fmt == "github":
        return text
    return text.replace("##[", "##\\u005b") if fmt in ("json", "sarif") else inert_log(text)
