"""Retrieval's calls in the eval run's spend cap: each call's worst case reserved before it is sent.

The cap is ``evals.runner.SpendBudget`` (one per run, shared with the model calls and the judges);
retrieval sees it through the ``Spend`` protocol. An embedding reserves its tokens at the input
price, a rerank its price per query; a call whose reservation would pass the cap is not sent.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

Result = TypeVar("Result")


class SpendCapError(Exception):
    """A retrieval call could pass the run's spend cap: it was not sent."""


class Spend(Protocol):
    """The eval run's spend cap (``evals.runner.SpendBudget``): embedding and rerank calls count in ``--max-cost``."""

    def reserve(self, amount: float) -> bool: ...

    def settle(self, reserved: float, actual: float | None) -> None: ...


async def spending(spend: Spend | None, worst: float | None, what: str, work: Coroutine[Any, Any, Result],
                   cost_of: Callable[[Result], float | None]) -> Result:
    """Run ``work`` with its worst case reserved against the spend cap, then settle what it cost.

    ``worst`` None (no price known) reserves nothing: what the call cost is counted once it is known.
    """
    reserved = worst or 0.0
    if spend is not None and not spend.reserve(reserved):
        work.close()
        raise SpendCapError(f"not run: {what} could pass the spend cap (raise eval.max_cost_usd or --max-cost)")
    actual: float | None = reserved  # a call cut short may still be billed: count its worst case
    try:
        result = await work
        actual = cost_of(result)
        return result
    finally:
        if spend is not None:
            spend.settle(reserved, actual)
