"""Numbers as reports show them: the same text in a terminal, JSON-free Markdown and HTML."""

from __future__ import annotations

import math

from promptops.model.cost import Delta


def money(value: float | None) -> str:
    if value is None:
        return "unknown"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value == 0:
        return "$0"
    if value < 0.01:
        # Six places; below a millionth (a query's embedding) enough for two significant digits, never "$0."
        places = 6 if value >= 1e-6 else 1 - math.floor(math.log10(value))
        return f"{sign}${value:.{places}f}".rstrip("0")
    return f"{sign}${value:,.2f}"


def tokens(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.0f}"


def signed(value: float | None, unit: str = "tokens") -> str:
    """A change, always with its sign: +3,584 or -$0.000142."""
    if value is None:
        return "unknown"
    if unit == "usd":
        text = money(value)
        return text if value < 0 else f"+{text}"
    return f"{value:+,.0f}"


def percent(points: float, places: int = 1, signed: bool = False) -> str:
    """The one percentage formatter: ``points`` in percent (a rate times 100), "67.5%", "+671.6%" or "100%"."""
    return f"{points:{'+' if signed else ''}.{places}f}%"


def change_percent(change: Delta) -> str:
    """A change's percentage in brackets after its figure, or nothing when a side is zero or unknown."""
    return "" if change.percent is None else f" ({percent(change.percent, signed=True)})"
