"""Small inline SVG charts for the HTML report: base against head, no script, nothing fetched.

Labels come from users' files, so every piece of text is escaped here; the
numbers are ours. Each function returns markup ready for an autoescaping template.
"""

from __future__ import annotations

from html import escape
from typing import Iterable, Sequence

from markupsafe import Markup

from promptops.estimate.cost import Change
from promptops.evals.compare import SuiteComparison
from promptops.report.formatting import money

SERIES = (("base", "#9aa5b1"), ("head", "#2f6fde"))
BAR_H, GAP, LABEL_W, CHART_W = 14, 10, 220, 360


def pass_rates(comparisons: Sequence[SuiteComparison]) -> Markup:
    groups = [(c.suite, [(c.base.pass_rate if c.base else None, c.head.pass_rate)]) for c in comparisons]
    return _bars(groups, 1.0, lambda v: f"{v:.0%}", "Pass rate per suite")


def costs(changes: Sequence[Change]) -> Markup:
    groups = [(c.prompt_id, [(c.base.cost_per_call if c.base else None, c.head.cost_per_call if c.head else None)])
              for c in changes if c.status != "unchanged"]
    known = [v for _, pairs in groups for pair in pairs for v in pair if v is not None]
    return _bars(groups, max(known, default=0.0), money, "Estimated cost per call")


def latency_histogram(comparison: SuiteComparison, bins: int = 12) -> Markup:
    """How latencies spread at base and at head, on one shared scale."""
    sides = {name: _latencies(comparison, name) for name, _ in SERIES}
    values = [v for side in sides.values() for v in side]
    if not values:
        return Markup("<p class=\"muted\">No latency measured.</p>")
    low, high = min(values), max(values)
    width = (high - low) / bins or 1.0
    counts = {name: [0] * bins for name in sides}
    for name, side in sides.items():
        for value in side:
            counts[name][min(int((value - low) / width), bins - 1)] += 1
    tallest = max(max(c) for c in counts.values()) or 1
    height, col = 90, CHART_W // bins
    parts = [f'<svg class="chart" width="{CHART_W + 20}" height="{height + 34}" role="img" '
             f'aria-label="Latency distribution, base and head">']
    for offset, (name, colour) in enumerate(SERIES):
        for index, count in enumerate(counts[name]):
            bar = count / tallest * height
            x = 10 + index * col + offset * (col // 2)
            parts.append(f'<rect x="{x}" y="{height - bar + 4:.1f}" width="{col // 2 - 1}" height="{bar:.1f}" '
                         f'fill="{colour}"><title>{name}: {count} calls, {low + index * width:,.0f}–'
                         f'{low + (index + 1) * width:,.0f} ms</title></rect>')
    parts.append(f'<text x="10" y="{height + 20}">{low:,.0f} ms</text>')
    parts.append(f'<text x="{CHART_W}" y="{height + 20}" text-anchor="end">{high:,.0f} ms</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _latencies(comparison: SuiteComparison, side: str) -> list[float]:
    runs = (getattr(change, side) for change in comparison.cases)
    return [a.latency_ms for run in runs if run is not None for a in run.attempts
            if a.latency_ms is not None and a.output is not None]


def _bars(groups: Iterable[tuple[str, list[tuple[float | None, float | None]]]], top: float,
          show: object, title: str) -> Markup:
    groups = list(groups)
    if not groups:
        return Markup('<p class="muted">Nothing to chart.</p>')
    row_h = 2 * BAR_H + GAP
    parts = [f'<svg class="chart" width="{LABEL_W + CHART_W + 90}" height="{len(groups) * row_h + 10}" '
             f'role="img" aria-label="{escape(title)}">']
    for row, (label, pairs) in enumerate(groups):
        y = 5 + row * row_h
        parts.append(f'<text x="0" y="{y + BAR_H + 4}">{escape(_short(label))}</text>')
        for offset, ((name, colour), value) in enumerate(zip(SERIES, pairs[0])):
            if value is None:
                continue
            width = CHART_W * (value / top) if top else 0
            top_y = y + offset * BAR_H
            parts.append(f'<rect x="{LABEL_W}" y="{top_y}" width="{max(width, 1):.1f}" height="{BAR_H - 2}" '
                         f'fill="{colour}"><title>{name}: {escape(show(value))}</title></rect>')  # type: ignore[operator]
            parts.append(f'<text x="{LABEL_W + width + 6:.1f}" y="{top_y + BAR_H - 3}">{name} '
                         f'{escape(show(value))}</text>')  # type: ignore[operator]
    parts.append("</svg>")
    return Markup("".join(parts))


def _short(label: str, limit: int = 34) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
