"""`promptops history`: every promotion and rollback of a prompt, from the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from promptops.commands.output import View, format_option, render, write_report
from promptops.errors import UsageError

Records = list[dict[str, Any]]  # the audit log's records of one prompt, oldest first


def _text(records: Records, view: View) -> str:
    from promptops.report.release import history_text

    return history_text(records)


def _json(records: Records, view: View) -> str:
    from promptops.report.release import history_json

    return history_json(records)


RENDERERS = {"text": _text, "json": _json}


@click.command()
@click.argument("prompt_id")
@format_option(RENDERERS, default="text", help=None)
def history(prompt_id: str, fmt: str) -> None:
    """Every promotion and rollback of PROMPT_ID, oldest first, from .promptops/audit.log."""
    from promptops import lockfile
    from promptops.release.promote import ReleaseProject
    from promptops.release.status import history as history_of

    project = ReleaseProject.open(Path.cwd())
    records = history_of(lockfile.read_audit(project.root / lockfile.AUDIT_LOG, lockfile.AUDIT_LOG), prompt_id)
    if not records and prompt_id not in project.workspace.prompts:
        raise UsageError(f"no prompt has id '{prompt_id}' and the audit log has no record of it")
    if records or fmt == "json":
        write_report(render(RENDERERS, fmt, records), fmt, None)
    else:
        click.echo(f"'{prompt_id}' has no record in {lockfile.AUDIT_LOG}")
