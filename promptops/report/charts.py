"""Small inline SVG charts for the HTML report: base against head, no script, nothing fetched.

Labels come from users' files, so every piece of text is escaped here; the
numbers are ours. Each function returns markup ready for an autoescaping template.
Where a suite has a gate on the charted figure, the chart draws it as a dashed line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from html import escape

from markupsafe import Markup

from promptops.model.check import RetrievalLine
from promptops.model.cost import Change
from promptops.model.evals import SuiteComparison, fresh_latencies
from promptops.report.formatting import money, percent

SERIES = (("base", "#9aa5b1"), ("head", "#2f6fde"))
GATE_COLOUR = "#cf222e"
BAR_H, GAP, LABEL_W, CHART_W = 14, 10, 220, 360
HIST_W, HIST_H, AXIS = 420, 110, 44  # latency histogram: plot size, room for the y axis labels


def pass_rates(comparisons: Sequence[SuiteComparison], gate: float | None = None) -> Markup:
    """Pass rate per suite at base and head; ``gate``: the minimum pass rate every suite is held to."""
    groups = [(c.suite, (c.base.pass_rate if c.base else None, c.head.pass_rate)) for c in comparisons]
    rate = lambda v: percent(v * 100, places=0)  # noqa: E731
    return _bars(groups, 1.0, rate, "Pass rate per suite",
                 gate=(gate, f"gate: pass rate ≥ {rate(gate)}") if gate is not None else None)


def recall(lines: Sequence[RetrievalLine]) -> Markup:
    """Mean recall@k per retrieval-backed suite at base and head."""
    groups = [(line.suite, (line.comparison.base.recall if line.comparison.base else None,
                            line.comparison.head.recall)) for line in lines]
    return _bars(groups, 1.0, lambda v: percent(v * 100, places=0), "Recall@k per suite (expected sources found)")


def judged(lines: Sequence[RetrievalLine]) -> Markup | None:
    """Judged context precision and recall per suite that asked for them, at base and head; None: none did."""
    groups = [(f"{line.suite}: {name.replace('_', ' ')}",
               (getattr(line.comparison.base, name) if line.comparison.base else None,
                getattr(line.comparison.head, name)))
              for line in lines for name in ("context_precision", "context_recall")
              if getattr(line.comparison.head, name) is not None]
    if not groups:
        return None
    return _bars(groups, 1.0, lambda v: f"{v:.2f}", "Judged context precision and recall per suite (0 to 1)")


def costs(changes: Sequence[Change]) -> Markup:
    groups = [(c.prompt_id, (c.base.cost_per_call if c.base else None, c.head.cost_per_call if c.head else None))
              for c in changes if c.status != "unchanged"]
    known = [v for _, pair in groups for v in pair if v is not None]
    return _bars(groups, max(known, default=0.0), money, "Estimated cost per call (from the files)")


def latency_histogram(comparison: SuiteComparison, gate_ms: float | None = None, bins: int = 12) -> Markup:
    """How the latencies timed in this run spread at base and at head, on one shared scale, with the
    p95 gate as a line. x: latency in ms; y: calls."""
    sides = {name: _latencies(comparison, name) for name, _ in SERIES}
    values = [v for side in sides.values() for v in side]
    if not values:
        return Markup('<p class="muted">No latency timed in this run (answers from the cache keep none).</p>')
    low, high = min(values), max(values)
    if gate_ms is not None:
        low, high = min(low, gate_ms), max(high, gate_ms)
    width = (high - low) / bins or 1.0
    counts = {name: [0] * bins for name in sides}
    for name, side in sides.items():
        for value in side:
            counts[name][min(int((value - low) / width), bins - 1)] += 1
    tallest = max(max(c) for c in counts.values()) or 1
    col = HIST_W // bins
    x_of = lambda ms: AXIS + (ms - low) / (high - low or 1.0) * (bins * col)  # noqa: E731
    parts = [f'<svg class="chart" width="{AXIS + HIST_W + 20}" height="{HIST_H + 52}" role="img" '
             f'aria-label="Latency distribution, base and head: calls by latency in milliseconds">']
    for offset, (name, colour) in enumerate(SERIES):
        for index, count in enumerate(counts[name]):
            bar = count / tallest * HIST_H
            x = AXIS + index * col + offset * (col // 2)
            parts.append(f'<rect x="{x}" y="{HIST_H - bar + 4:.1f}" width="{col // 2 - 1}" height="{bar:.1f}" '
                         f'fill="{colour}"><title>{name}: {count} calls, {low + index * width:,.0f}–'
                         f'{low + (index + 1) * width:,.0f} ms</title></rect>')
    # Axes: calls on the left, milliseconds below, each with its unit.
    parts.append(f'<line x1="{AXIS}" y1="4" x2="{AXIS}" y2="{HIST_H + 4}" stroke="#656d76"/>')
    parts.append(f'<line x1="{AXIS}" y1="{HIST_H + 4}" x2="{AXIS + bins * col}" y2="{HIST_H + 4}" stroke="#656d76"/>')
    parts.append(f'<text x="{AXIS - 4}" y="14" text-anchor="end">{tallest}</text>')
    parts.append(f'<text x="{AXIS - 4}" y="{HIST_H + 4}" text-anchor="end">0</text>')
    parts.append(f'<text x="4" y="{HIST_H // 2 + 4}" transform="rotate(-90 10 {HIST_H // 2})">calls</text>')
    parts.append(f'<text x="{AXIS}" y="{HIST_H + 20}">{low:,.0f} ms</text>')
    parts.append(f'<text x="{AXIS + bins * col}" y="{HIST_H + 20}" text-anchor="end">{high:,.0f} ms</text>')
    parts.append(f'<text x="{AXIS + bins * col // 2}" y="{HIST_H + 36}" text-anchor="middle">latency (ms), '
                 f'timed in this run</text>')
    if gate_ms is not None:
        x = x_of(gate_ms)
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{HIST_H + 4}" stroke="{GATE_COLOUR}" '
                     f'stroke-dasharray="4 3"><title>gate: p95 ≤ {gate_ms:,.0f} ms</title></line>')
        parts.append(f'<text x="{x + 3:.1f}" y="{HIST_H + 48}" fill="{GATE_COLOUR}">p95 gate {gate_ms:,.0f} ms</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _latencies(comparison: SuiteComparison, side: str) -> list[float]:
    return fresh_latencies(getattr(change, side) for change in comparison.cases)


def _bars(groups: Iterable[tuple[str, tuple[float | None, float | None]]], top: float, show: Callable[[float], str],
          title: str, gate: tuple[float, str] | None = None) -> Markup:
    groups = list(groups)
    if not groups:
        return Markup('<p class="muted">Nothing to chart.</p>')
    row_h = 2 * BAR_H + GAP
    height = len(groups) * row_h + 10 + (16 if gate else 0)
    parts = [f'<svg class="chart" width="{LABEL_W + CHART_W + 90}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">']
    for row, (label, pair) in enumerate(groups):
        y = 5 + row * row_h
        parts.append(f'<text x="0" y="{y + BAR_H + 4}">{escape(_short(label))}</text>')
        for offset, ((name, colour), value) in enumerate(zip(SERIES, pair)):
            if value is None:
                continue
            width = CHART_W * (value / top) if top else 0
            top_y = y + offset * BAR_H
            parts.append(f'<rect x="{LABEL_W}" y="{top_y}" width="{max(width, 1):.1f}" height="{BAR_H - 2}" '
                         f'fill="{colour}"><title>{name}: {escape(show(value))}</title></rect>')
            parts.append(f'<text x="{LABEL_W + width + 6:.1f}" y="{top_y + BAR_H - 3}">{name} '
                         f'{escape(show(value))}</text>')
    if gate is not None and top:
        value, caption = gate
        x = LABEL_W + CHART_W * value / top
        bottom = len(groups) * row_h + 5
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{bottom}" stroke="{GATE_COLOUR}" '
                     f'stroke-dasharray="4 3"><title>{escape(caption)}</title></line>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" fill="{GATE_COLOUR}">'
                     f'{escape(caption)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _short(label: str, limit: int = 34) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
