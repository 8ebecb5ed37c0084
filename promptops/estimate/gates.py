"""`promptops cost --fail-on-increase PCT`: the rises a change may not make (budgets are ``CostReport.findings``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from promptops.model.cost import CostReport


def increases(report: CostReport, limit: float) -> list[str]:
    """Rises beyond ``limit`` percent: the monthly total, or a prompt's cost per call."""
    rises = []
    total = report.monthly_delta
    if total.percent is not None and total.percent > limit:
        rises.append(f"monthly cost rises {total.percent:.1f}%, more than --fail-on-increase {limit:g}%")
    for change in report.changes:
        per_call = change.delta("cost_per_call")
        if change.status == "changed" and per_call.percent is not None and per_call.percent > limit:
            rises.append(f"'{change.prompt_id}' cost per call rises {per_call.percent:.1f}%, "
                         f"more than --fail-on-increase {limit:g}%")
    return rises
