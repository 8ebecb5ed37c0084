"""`promptops status`: which version of each prompt every environment holds."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from promptops.commands.output import View, format_option, render, write_report
from promptops.errors import ExitCode

if TYPE_CHECKING:
    from promptops.model.release import Row


@dataclass(frozen=True)
class ReleaseStatus:
    rows: list[Row]
    environments: list[str]
    problems: list[str]  # release snapshots missing or altered


def _text(status: ReleaseStatus, view: View) -> str:
    from promptops.report.release import status_text

    return status_text(status.rows, status.environments, status.problems)


def _json(status: ReleaseStatus, view: View) -> str:
    from promptops.report.release import status_json

    return status_json(status.rows, status.environments, status.problems)


RENDERERS = {"text": _text, "json": _json}


@click.command()
@format_option(RENDERERS, default="text", help=None)
def status(fmt: str) -> None:
    """Which version of each prompt every environment holds, marking those behind the working tree's
    version, those whose prompt is gone, and those whose release snapshot is missing or altered.

    Exit 1 when a release snapshot the lock names is missing or altered (as lint's PO131), 2 when the
    lock or the config cannot be used.
    """
    from promptops.release.promote import ReleaseProject
    from promptops.release.status import environment_order, snapshot_problems, status as rows_of

    project = ReleaseProject.open(Path.cwd())
    held = ReleaseStatus(rows_of(project.workspace, project.lock), environment_order(project.workspace, project.lock),
                  snapshot_problems(project.lock))
    write_report(render(RENDERERS, fmt, held), fmt, None)
    if held.problems:
        sys.exit(ExitCode.FINDINGS)
