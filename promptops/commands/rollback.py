"""`promptops rollback`: move an environment back to a version it held before."""

from __future__ import annotations

from pathlib import Path

import click

from promptops.commands.release import echo_outcome


@click.command()
@click.argument("prompt_id")
@click.option("--env", "environment", required=True, metavar="ENV", help="The environment to roll back.")
@click.option("--to", "version", metavar="VERSION", help="A version ENV held before (default: the one just before).")
@click.option("--reason", metavar="TEXT", help="Why; recorded in the lock and the audit log.")
@click.option("--commit", "make_commit", is_flag=True, help="Commit exactly the files the rollback wrote.")
def rollback(prompt_id: str, environment: str, version: str | None, reason: str | None, make_commit: bool) -> None:
    """Move ENV back to the version of PROMPT_ID it held before, in one step (no evals, no git needed)."""
    from promptops.release.promote import rollback as run_rollback

    echo_outcome(run_rollback(Path.cwd(), prompt_id, environment, version, reason, make_commit))
