"""`promptops lint`: check prompt, retrieval, eval and config files."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from promptops.commands.options import color_option
from promptops.commands.output import View, format_option, output_option, render, write_report
from promptops.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from promptops.model.lint import LintRun


def _lint_as(fmt: str, run: LintRun, view: View) -> str:
    from promptops.report.lint import render as render_lint

    return render_lint(run, fmt, color=view.color)


RENDERERS = {fmt: functools.partial(_lint_as, fmt) for fmt in ("text", "json", "github", "sarif")}


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@format_option(RENDERERS, default=None, help="Output format (default: github inside GitHub Actions, else text).")
@output_option("Write the report to this file instead of standard output.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
@click.option("--explain", metavar="CODE", help="Print what a rule checks, with examples, and exit.")
@color_option("Colour text output (default: on a terminal).")
def lint(paths: tuple[Path, ...], fmt: str | None, output: Path | None, strict: bool,
         explain: str | None, color: bool | None) -> None:
    """Check prompt, retrieval, eval and config files (default: the whole project).

    Files named are counted; promptops.yaml and the eval suites of the
    prompts named are checked too, and counted as related.

    Exit codes: 0 clean, 1 errors found (or warnings with --strict),
    2 unusable input (a broken promptops.yaml, a path that does not exist,
    nothing to lint; under pre-commit, a file no promptops.yaml claims).
    """
    from promptops.lint import find_rule, lint as run_lint
    from promptops.lint.engine import not_promptops_files, nothing_to_lint, outside_projects

    if explain:
        rule = find_rule(explain)
        if rule is None:
            raise click.UsageError(f"no rule {explain!r}; codes look like PO202")
        click.echo(rule.explain())
        return
    missing = [str(p) for p in paths if not os.path.lexists(p)]
    if missing:
        raise click.UsageError(f"no such file or folder: {', '.join(missing)}")
    if os.environ.get("PRE_COMMIT") == "1":  # set by pre-commit for its hooks
        _refuse_files_outside_projects(outside_projects(paths))
    for path in not_promptops_files(paths):
        click.echo(f"promptops lint: skipped {path}: not a promptops file by its name", err=True)
    fmt = fmt or ("github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text")
    run = run_lint(list(paths))
    if not run.files and not run.config_errors:
        raise UsageError(nothing_to_lint(list(paths), Path.cwd().resolve()))
    use_color = (color if color is not None else sys.stdout.isatty()) and fmt == "text" and output is None
    write_report(render(RENDERERS, fmt, run, View(color=use_color)), fmt, output, color=use_color)
    if run.config_errors:
        sys.exit(ExitCode.USAGE)
    if run.errors or (strict and run.findings):
        sys.exit(ExitCode.FINDINGS)


def _refuse_files_outside_projects(orphans: list[Path]) -> None:
    """A commit hook given files that no promptops.yaml claims is set up wrong: linting them with the default
    settings would pass what the project's settings (rules, prices, paths) might not, and say nothing."""
    if not orphans:
        return
    more, they = (f" (and {len(orphans) - 1} more)", "they belong") if len(orphans) > 1 else ("", "it belongs")
    folder = orphans[0].parent.resolve()
    raise UsageError(f"{orphans[0]}{more}: no promptops.yaml in {folder} or a folder above it, so {they} to no "
                     "promptops project. Run `promptops init` where the project's files live, or narrow the hook "
                     "with `files:` or `exclude:` in .pre-commit-config.yaml")
