"""Renderers for a CostReport: a terminal table (rich), versioned JSON, and Markdown from a template."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from promptops.model.cost import Change, CostReport, Estimate, OutputSource
from promptops.report import versions
from promptops.report.formatting import change_percent, money, percent, signed, tokens
from promptops.report.jinja import render_template

_FIELDS = ("input_tokens", "input_tokens_p95", "output_tokens", "cost_per_call", "retrieval_cost_per_call",
           "monthly_cost")


def headline(report: CostReport) -> str:
    """One sentence a reviewer reads first."""
    change = report.monthly_delta
    if report.monthly_base == 0 and report.monthly_head == 0:
        moved = [c for c in report.changes if c.status != "unchanged"]
        if not moved:
            return "No prompt changes cost."
        return f"{len(moved)} prompt(s) change cost per call; no usage: is set, so no monthly figure."
    if not change.absolute:
        return f"Monthly cost is unchanged at {money(report.monthly_head)}."
    direction = "rises" if change.absolute > 0 else "falls"
    return (f"Monthly cost {direction} by {money(abs(change.absolute))}{change_percent(change)}, "
            f"to {money(report.monthly_head)}.")


# -- JSON -------------------------------------------------------------------------------------

def to_json(report: CostReport) -> dict[str, Any]:
    """The document schemas/cost-report.schema.json describes; stable keys and ordering."""
    return {
        "schema_version": versions.COST_REPORT,
        "base": report.base_label,
        "head": report.head_label,
        "headline": headline(report),
        "prompts": [_change_json(change) for change in report.changes],
        "totals": {
            "monthly_base_usd": _round(report.monthly_base),
            "monthly_head_usd": _round(report.monthly_head),
            "monthly_delta_usd": _round(report.monthly_delta.absolute),
            "monthly_delta_pct": _round(report.monthly_delta.percent, 2),
            "unknown": report.unknown_monthly,
        },
        "findings": [
            {"path": f.path, "line": f.line, "column": f.col, "code": f.code, "severity": str(f.severity),
             "message": f.message}
            for f in report.findings
        ],
        "assumptions": report.assumptions,
    }


def render_json(report: CostReport) -> str:
    return json.dumps(to_json(report), indent=2, sort_keys=True) + "\n"


def _change_json(change: Change) -> dict[str, Any]:
    deltas = {}
    for name in _FIELDS:
        d = change.delta(name)
        deltas[name] = {"absolute": _round(d.absolute), "percent": _round(d.percent, 2)}
    return {
        "id": change.prompt_id,
        "status": change.status,
        "base": _estimate_json(change.base),
        "head": _estimate_json(change.head),
        "delta": deltas,
    }


def _estimate_json(estimate: Estimate | None) -> dict[str, Any] | None:
    if estimate is None:
        return None
    return {
        "path": estimate.path,
        "version": estimate.version,
        "model": estimate.model,
        "input_tokens": estimate.input_tokens,
        "input_tokens_p95": estimate.input_tokens_p95,
        "input_samples": estimate.samples,
        "input_basis": estimate.input_basis,
        "retrieval_tokens": estimate.retrieval_tokens,
        "token_method": {
            "encoding": estimate.token_method.encoding,
            "exact": estimate.token_method.exact,
            "note": estimate.token_method.note,
        },
        "output_tokens": _round(estimate.output_tokens, 2),
        "output_basis": estimate.output_basis,
        "cost_per_call_usd": _round(estimate.cost_per_call),
        "retrieval_cost_per_call_usd": _round(estimate.retrieval_cost_per_call),
        "retrieval_basis": estimate.retrieval_basis,
        "calls_per_day": estimate.calls_per_day,
        "monthly_cost_usd": _round(estimate.monthly_cost),
        "price_source": estimate.price_source,
        "warnings": list(estimate.warnings),
    }


def _round(value: float | None, digits: int = 9) -> float | None:
    """Rounded so that float noise never changes the output bytes (nor writes -0.0 for a change too small to show)."""
    if value is None:
        return None
    rounded = round(value, digits)
    return rounded if rounded else abs(rounded)


def shown(report: CostReport, show_all: bool) -> tuple[list[Change], str | None]:
    """The prompts a table lists (those whose estimate moved, unless ``show_all``), and the line that
    counts the others."""
    if show_all:
        return report.changes, None
    listed = [change for change in report.changes if change.status != "unchanged"]
    hidden = len(report.changes) - len(listed)
    if not hidden:
        return listed, None
    return listed, f"{hidden} unchanged prompt{'s' * (hidden != 1)} not shown (--all lists them)."


# -- terminal table ---------------------------------------------------------------------------

def render_table(report: CostReport, color: bool = False, width: int = 120, show_all: bool = False) -> str:
    from rich.console import Console
    from rich.table import Table

    changes, hidden = shown(report, show_all)
    table = Table(title=f"Cost: {report.base_label} → {report.head_label}", title_justify="left")
    retrieves = any_retrieval(changes)
    for column in ("prompt", "model", "input tokens", "output tokens", "cost / call",
                   *(("retrieval / call",) if retrieves else ()), "monthly"):
        if column in ("prompt", "model"):
            table.add_column(column, overflow="fold")  # ids and model names wrap, never lose their ends
        else:
            table.add_column(column, justify="right")
    for change in changes:
        table.add_row(*_row(change, retrieves))
    console = Console(record=True, width=width, color_system="standard" if color else None, force_terminal=color,
                      highlight=False)
    with console.capture() as capture:
        if changes:
            console.print(table)
        else:
            console.print(table.title, markup=False)
        console.print(headline(report))
        if hidden:
            console.print(hidden, markup=False)
        for finding in report.findings:
            console.print(f"{finding}", markup=False, style="red" if color else None)
        for note in report.assumptions:
            console.print(f"  {note}", markup=False, style="dim" if color else None)
    return capture.get()


def any_retrieval(changes: list[Change]) -> bool:
    """Whether a listed prompt pays for retrieval (or might: its price unknown), at either ref: then the table
    gives retrieval per call its own column."""
    return any(side is not None and side.retrieval_cost_per_call != 0
               for change in changes for side in (change.base, change.head))


def _row(change: Change, retrieves: bool) -> list[str]:
    base, head = change.base, change.head
    model = head.model if head else base.model if base else ""
    if base and head and base.model != head.model:
        model = f"{base.model} → {head.model}"
    label = change.prompt_id if change.status in ("changed", "unchanged") else f"{change.prompt_id} ({change.status})"
    return [
        label,
        model,
        _cell(change, "input_tokens", tokens, "tokens"),
        _cell(change, "output_tokens", tokens, "tokens") + _output_mark(head or base),
        _cell(change, "cost_per_call", money, "usd"),
        *([_cell(change, "retrieval_cost_per_call", money, "usd")] if retrieves else []),
        _cell(change, "monthly_cost", money, "usd"),
    ]


def _cell(change: Change, name: str, show: Callable[[Any], str], unit: str) -> str:
    """The head's figure with its change: '4,120 (+3,584, +671.6%)'; a removed prompt shows its base."""
    side = change.head if change.head is not None else change.base
    value = getattr(side, name) if side is not None else None
    if change.status == "removed":
        return f"{show(value)} → removed"
    d = change.delta(name)
    if change.status == "added" or not d.absolute:
        return show(value)
    pct = f", {percent(d.percent, signed=True)}" if d.percent is not None else ""
    return f"{show(value)} ({signed(d.absolute, unit)}{pct})"


def _output_mark(estimate: Estimate | None) -> str:
    """A reminder, in the table itself, that an output figure is an upper bound."""
    return " (max)" if estimate is not None and estimate.output_source is OutputSource.MAX_TOKENS else ""


# -- Markdown ---------------------------------------------------------------------------------

def render_markdown(report: CostReport, show_all: bool = False) -> str:
    changes, hidden = shown(report, show_all)
    retrieves = any_retrieval(changes)
    return render_template("cost.md.j2", report=report, headline=headline(report), changes=changes, hidden=hidden,
                           rows=[_row(c, retrieves) for c in changes], retrieves=retrieves)
