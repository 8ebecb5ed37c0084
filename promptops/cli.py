"""The command line: one click group of the commands in ``promptops.commands``, and the one place where an
error becomes its message and exit code (``PromptopsGroup.invoke``), reached through ``main(argv) -> int``."""

from __future__ import annotations

from typing import Any, Sequence

import click

from promptops import __version__
from promptops.commands import ci, cost, demo, diff, eval, export, history, init, lint, merge, promote, render
from promptops.commands import rollback, status
from promptops.errors import ExitCode, PromptopsError


class PromptopsGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a PromptopsError it raises is its message on stderr and its exit code, never a
        traceback. A message may quote a file name or a YAML key: it is printed inert to an Actions log."""
        try:
            return super().invoke(ctx)
        except PromptopsError as error:
            from promptops.report.safety import inert_log

            click.echo(f"{error.program}: {inert_log(str(error))}", err=True)
            ctx.exit(error.exit_code)


@click.group(cls=PromptopsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="promptops")
def cli() -> None:
    """LLM prompts and retrieval configs as code: lint, cost, evals, PR checks."""


for command in (lint.lint, init.init, render.render, cost.cost, diff.diff, eval.eval_command, merge.merge, ci.ci,
                demo.demo, promote.promote, rollback.rollback, status.status, history.history, export.export):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one promptops command (``argv`` without the program name; default: ``sys.argv[1:]``) and return
    its exit code, never exiting: the console script and ``python -m promptops`` exit with it, tests call it
    in-process."""
    try:
        cli.main(args=None if argv is None else list(argv), prog_name="promptops")
    except SystemExit as stop:
        return _exit_code(stop.code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return ExitCode.INTERRUPTED
    return ExitCode.OK


def _exit_code(code: object) -> int:
    """What the interpreter would exit with for ``sys.exit(code)``: a message is printed and is 1."""
    if code is None or isinstance(code, int):
        return code or ExitCode.OK
    click.echo(code, err=True)
    return 1
