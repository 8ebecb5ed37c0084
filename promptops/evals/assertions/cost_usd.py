"""cost_usd: the call cost at most max US dollars; an unknown cost fails."""

from __future__ import annotations

from typing import Any

from promptops.evals.assertions.base import Answer, AssertionResult, Bounded, outcome
from promptops.specs import Assertion


class CostUsd(Bounded):
    name = "cost_usd"
    bounds = ("max",)

    def assess(self, assertion: Assertion, answer: Answer, value: Any) -> AssertionResult:
        limit = assertion.max
        assert limit is not None  # validate requires it
        if answer.cost_usd is None:
            return outcome(False, "cost unknown")
        if answer.cost_usd > limit:
            return outcome(False, f"cost ${answer.cost_usd:.6g} is over the ${limit:.6g} limit")
        return outcome(True, f"cost ${answer.cost_usd:.6g} is within the ${limit:.6g} limit")


TYPE = CostUsd()
