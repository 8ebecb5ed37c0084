"""`promptops diff`: what changed in prompts and retrieval configs between two refs, field by field."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from promptops.commands.options import ref_options
from promptops.commands.output import View, format_option, output_option, render, write_report
from promptops.commands.refs import snapshots

if TYPE_CHECKING:
    from promptops.model.diff import SpecDiff


def _text(changes: SpecDiff, view: View) -> str:
    from promptops.report.diff import render_text

    return render_text(changes, view.base_label or "", view.head_label)


def _json(changes: SpecDiff, view: View) -> str:
    from promptops.report.diff import render_json

    return render_json(changes, view.base_label or "", view.head_label)


def _markdown(changes: SpecDiff, view: View) -> str:
    from promptops.report.diff import render_markdown

    return render_markdown(changes, view.base_label or "", view.head_label)


RENDERERS = {"text": _text, "json": _json, "markdown": _markdown}


@click.command()
@ref_options
@format_option(RENDERERS, default="text")
@output_option()
def diff(base: str | None, head: str | None, staged: bool, fmt: str, output: Path | None) -> None:
    """What changed in prompts and retrieval configs between two refs, field by field.

    Formatting-only edits read "no semantic change"; a re-index or a model
    family swap is called out. Exit 2 when a ref or the config cannot be used.
    """
    from promptops.diff import diff_workspaces

    refs = snapshots(base, head, staged)
    changes = diff_workspaces(refs.base, refs.head)
    view = View(base_label=str(refs.base_ref), head_label=str(refs.head_ref))
    write_report(render(RENDERERS, fmt, changes, view), fmt, output)
