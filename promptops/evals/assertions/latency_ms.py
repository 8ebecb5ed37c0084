"""latency_ms: the call took at most max milliseconds; the client's untimed warm-up call is not judged."""

from __future__ import annotations

from typing import Any

from promptops.evals.assertions.base import Answer, AssertionResult, Bounded, outcome
from promptops.specs import Assertion


class LatencyMs(Bounded):
    name = "latency_ms"
    bounds = ("max",)

    def assess(self, assertion: Assertion, answer: Answer, value: Any) -> AssertionResult:
        limit = assertion.max
        assert limit is not None  # validate requires it
        if answer.latency_ms is None:
            # The first call of each process to a provider warms the client up and is not timed: judging
            # it on half a second of imports and connecting would fail a case no prompt change touched.
            return outcome(True, "latency not timed (the client's warm-up call); not judged")
        if answer.latency_ms > limit:
            return outcome(False, f"latency {answer.latency_ms:,.0f} ms is over the {limit:,} ms limit")
        return outcome(True, f"latency {answer.latency_ms:,.0f} ms is within the {limit:,} ms limit")


TYPE = LatencyMs()
