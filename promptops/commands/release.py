"""What `promptops promote` and `promptops rollback` share: saying what they did."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from promptops.model.release import ReleaseOutcome


def echo_outcome(outcome: ReleaseOutcome) -> None:
    from promptops.report.release import outcome_lines

    for line, to_stderr in outcome_lines(outcome):
        click.echo(line, err=to_stderr)
