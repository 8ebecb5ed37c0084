"""`promptops cost`: tokens and cost per call and per month at two refs, and their deltas."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from promptops.commands.options import color_option, ref_options
from promptops.commands.output import View, format_option, output_option, render, write_report
from promptops.commands.refs import snapshots
from promptops.errors import ExitCode

if TYPE_CHECKING:
    from promptops.model.cost import CostReport


def _table(report: CostReport, view: View) -> str:
    from promptops.report.cost import render_table

    return render_table(report, color=view.color, show_all=view.show_all)


def _json(report: CostReport, view: View) -> str:
    from promptops.report.cost import render_json

    return render_json(report)


def _markdown(report: CostReport, view: View) -> str:
    from promptops.report.cost import render_markdown

    return render_markdown(report, show_all=view.show_all)


RENDERERS = {"table": _table, "json": _json, "markdown": _markdown}


@click.command()
@ref_options
@format_option(RENDERERS, default="table")
@output_option()
@click.option("--fail-on-increase", type=click.FloatRange(min=0), metavar="PCT",
              help="Exit 1 if the monthly total, or any prompt's cost per call, rises by more than PCT percent.")
@click.option("--warn", is_flag=True, help="Report budget breaches without failing (what the commit hook does).")
@click.option("--all", "show_all", is_flag=True,
              help="List unchanged prompts too (table and markdown; json always lists every prompt, with its status).")
@color_option("Colour the table (default: on a terminal).")
def cost(base: str | None, head: str | None, staged: bool, fmt: str, output: Path | None,
         fail_on_increase: float | None, warn: bool, show_all: bool, color: bool | None) -> None:
    """Tokens and cost per call and per month at two refs, and their deltas.

    Offline: tokens are counted with the model's tokenizer where one ships with
    the installed packages (an approximation, flagged, elsewhere) and prices
    come from litellm's price map and pricing: in promptops.yaml. The table
    lists the prompts whose figures changed, and counts the others in one
    line (--all lists them). Exit 1 when the head breaks a prompt's budget or
    --fail-on-increase; 2 when a ref or the config cannot be used.
    """
    from promptops.estimate.cost import compare_costs
    from promptops.estimate.gates import increases

    refs = snapshots(base, head, staged)
    report = compare_costs(refs.base, refs.head, str(refs.base_ref), str(refs.head_ref))
    use_color = color if color is not None else (sys.stdout.isatty() and output is None)
    write_report(render(RENDERERS, fmt, report, View(color=bool(use_color), show_all=show_all)), fmt, output)
    for problem in refs.base.problems + refs.head.problems:
        click.echo(f"note: not estimated: {problem}", err=True)
    failures = [] if warn else [str(f) for f in report.findings]
    if fail_on_increase is not None:
        failures += increases(report, fail_on_increase)
    for failure in failures:
        click.echo(f"promptops cost: {failure}", err=True)
    if failures:
        sys.exit(ExitCode.FINDINGS)
