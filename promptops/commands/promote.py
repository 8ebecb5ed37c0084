"""`promptops promote`: move a prompt's version into an environment, with evidence."""

from __future__ import annotations

from pathlib import Path

import click

from promptops.commands.release import echo_outcome


@click.command()
@click.argument("prompt_id")
@click.option("--to", "environment", required=True, metavar="ENV", help="The environment to promote to.")
@click.option("--ref", metavar="REF",
              help="The commit to promote from (default: HEAD for the first environment, else the commit of the "
                   "version the environment before it holds).")
@click.option("--force", is_flag=True,
              help="Promote despite a failed gate, missing evidence or the order (needs --reason).")
@click.option("--reason", metavar="TEXT", help="Why; recorded in the lock and the audit log.")
@click.option("--commit", "make_commit", is_flag=True, help="Commit exactly the files the promotion wrote.")
@click.option("--api-base", envvar="PROMPTOPS_API_BASE", metavar="URL",
              help="An OpenAI-compatible server for eval calls the cache cannot answer.")
def promote(prompt_id: str, environment: str, ref: str | None, force: bool, reason: str | None,
            make_commit: bool, api_base: str | None) -> None:
    """Move PROMPT_ID's version at a commit into ENV, with evidence that it passed its suites' gates.

    Environments follow the order in promptops.yaml (default dev, staging,
    prod): each receives only what the one before it holds. Evidence comes from
    the eval cache, else the suites run. Writes promptops.lock.yaml, the release
    snapshot in .promptops/releases/ and a line in .promptops/audit.log. Exit 1
    when a gate failed or there is no evidence, 2 for a wrong id, environment,
    order, a dirty prompt or a broken lock, 3 when model calls failed.
    """
    from promptops.release.promote import Request, promote as run_promote
    from promptops.report.progress import Progress

    request = Request(prompt_id, environment, ref, force, reason, make_commit, api_base)
    progress = Progress()
    try:
        outcome = run_promote(Path.cwd(), request, progress)
    finally:
        progress.close()
    echo_outcome(outcome)
