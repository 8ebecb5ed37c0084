"""The command line: one click group of the commands in ``promptops.commands``, and the one place where an
error becomes its message and exit code (``PromptopsGroup.invoke``), reached through ``main(argv) -> int``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from promptops import __version__
from promptops.commands.ci import ci
from promptops.commands.cost import cost
from promptops.commands.demo import demo
from promptops.commands.diff import diff
from promptops.commands.eval import eval_command
from promptops.commands.export import export
from promptops.commands.history import history
from promptops.commands.init import init
from promptops.commands.lint import lint
from promptops.commands.merge import merge
from promptops.commands.promote import promote
from promptops.commands.render import render
from promptops.commands.rollback import rollback
from promptops.commands.status import status
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


for command in (lint, init, render, cost, diff, eval_command, merge, ci, demo, promote, rollback, status, history,
                export):
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
    # Unreachable: click's main() in standalone mode always ends by raising SystemExit.


def _exit_code(code: object) -> int:
    """What the interpreter would exit with for ``sys.exit(code)``: a message is printed and is 1."""
    if code is None or isinstance(code, int):
        return code or ExitCode.OK
    click.echo(code, err=True)
    return 1
