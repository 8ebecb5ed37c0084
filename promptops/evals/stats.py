"""Noise-aware statistics for eval results: pass-rate intervals, latency percentiles,
a paired base -> head test on case outcomes, and the gates built on them.

Pure functions on plain data; nothing here reads files, calls models or prints.

Decisions, and their limits:

- Pass-rate intervals are Wilson score intervals. Unlike the normal ("Wald")
  interval they stay inside [0, 1] and remain sensible at 0/n and n/n, which is
  where eval suites usually live. No runs at all give the uninformative (0, 1).

- Latency percentiles are nearest-rank: always one of the measured values, never
  an interpolation, so "p95 = 4,210 ms" is a latency that actually happened.

- The paired test compares cases, not pooled pass rates: a case is its own
  control, so a change that trades one case for another does not look like
  noise-free stability, and case difficulty does not inflate the variance.
  Each case has repeat outcomes on each side (the counts may differ). A side
  "passes" the case when its pass rate over the repeats is >= 0.5 (a tie counts
  as a pass). A case is *fixed* when it fails at base and passes at head,
  *regressed* for the opposite, *unchanged* otherwise. The p-value is the exact
  two-sided sign test (exact McNemar) on the discordant cases: under "the
  change did nothing" each discordant case is equally likely to go either way,
  so min(fixed, regressed) is Binomial(fixed + regressed, 1/2). It is computed
  with exact integers, so ten thousand cases neither overflow nor lose precision.

- Flaky cases (mixed outcomes across the repeats on either side) are counted and
  named, but *kept* in the test, classified by their majority. Dropping them
  would hide the commonest real regression of a prompt change: cases that
  always passed and now usually fail (5/5 -> 1/5). Keeping them costs no
  validity -- under "no change" a flaky case is as likely to flip up as down --
  only some power, since a coin-flip case adds a discordance either way. With
  different repeat counts on the two sides that symmetry is approximate.

- Small samples cannot reach significance, by design: 1 regressed case of 1
  gives p = 1.0 and 5 of 5 gives p = 0.0625; at alpha 0.05 it takes at least 6
  discordant cases, all in one direction. Below that the verdict is
  "within noise", and the report should show the counts so a reviewer can
  still judge. Raising `repeat:` does not add cases; adding cases does.

- Shifts that do not cross the majority line (5/5 -> 3/5) are not discordant
  and are invisible to the paired test; the pass rate and its interval show them.

- Gates: the pass-rate-drop gate fails only when the drop exceeds the allowed
  drop *and* the paired test calls it a regression, so noise alone never fails
  a PR. Gates whose input is unknown (no price for the model, no latencies, no
  base run) pass and say why: an unpriced self-hosted model would otherwise fail
  every PR, and the cost stage already reports the missing price.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Verdict = Literal["regression", "improvement", "within noise", "no change"]

# Rates and costs arrive as float quotients (0.9 - 0.88 > 0.02 in binary);
# a gate must not fail on the last bit of a value exactly at its limit.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PairedResult:
    fixed: int  # fail at base, pass at head
    regressed: int  # pass at base, fail at head
    unchanged: int
    flaky: int  # cases with mixed repeats on either side; they are also counted above
    p_value: float  # exact two-sided sign test on fixed vs regressed
    verdict: Verdict


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str


def wilson_interval(passed: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a pass rate of `passed` out of `total`."""
    if not 0 <= passed <= total:
        raise ValueError(f"passed must be within 0..total, got {passed} of {total}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if total == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    rate = passed / total
    z2n = z * z / total
    centre = (rate + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(rate * (1 - rate) / total + z2n / (4 * total))
    # At 0/n and n/n the bound is exactly 0 or 1; the float arithmetic lands a rounding error off.
    lower = 0.0 if passed == 0 else centre - half
    upper = 1.0 if passed == total else centre + half
    return (lower, upper)


def percentile(values: Iterable[float], pct: float) -> float | None:
    """Nearest-rank percentile (pct in 0..100); None when there are no values."""
    if not 0 <= pct <= 100:
        raise ValueError(f"pct must be within 0..100, got {pct}")
    ordered = sorted(values)
    if not ordered:
        return None
    # pct * n first: exact for whole percents, where pct / 100 * n is not (0.95 * 20).
    rank = max(1, math.ceil(pct * len(ordered) / 100))
    return ordered[rank - 1]


def p50(values: Iterable[float]) -> float | None:
    return percentile(values, 50)


def p95(values: Iterable[float]) -> float | None:
    return percentile(values, 95)


def flaky(outcomes: Sequence[bool]) -> bool:
    """Whether the repeats of one case disagree."""
    return 0 < sum(outcomes) < len(outcomes)


def flaky_cases(outcomes_by_case: Mapping[str, Sequence[bool]]) -> list[str]:
    """Ids of the flaky cases of one side, in the mapping's order."""
    return [case_id for case_id, outcomes in outcomes_by_case.items() if flaky(outcomes)]


def sign_test_p_value(fixed: int, regressed: int) -> float:
    """Exact two-sided sign test: P(a split at least this uneven | each way equally likely)."""
    n = fixed + regressed
    if n == 0:
        return 1.0
    # Binomial coefficients by the integer recurrence C(n, i+1) = C(n, i) * (n-i) / (i+1):
    # exact at any n, and one multiply per term instead of a fresh math.comb each.
    term = tail = 1
    for i in range(min(fixed, regressed)):
        term = term * (n - i) // (i + 1)
        tail += term
    # int / int is correctly rounded even when 2**n is far beyond float range.
    return min(1.0, 2 * tail / (1 << n))


def paired_test(pairs: Sequence[tuple[Sequence[bool], Sequence[bool]]], alpha: float = 0.05) -> PairedResult:
    """Compare per-case outcomes at base and head; each pair is (base repeats, head repeats)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    fixed = regressed = unchanged = flaky_count = 0
    for index, (base, head) in enumerate(pairs):
        if not base or not head:
            # A case missing on one side is new or removed, not a paired outcome.
            raise ValueError(f"case {index} has no outcomes on one side")
        base_passes = _passes(base)
        head_passes = _passes(head)
        if head_passes and not base_passes:
            fixed += 1
        elif base_passes and not head_passes:
            regressed += 1
        else:
            unchanged += 1
        flaky_count += flaky(base) or flaky(head)
    p_value = sign_test_p_value(fixed, regressed)
    verdict: Verdict
    if fixed + regressed == 0:
        verdict = "no change"
    elif p_value < alpha:
        verdict = "regression" if regressed > fixed else "improvement"
    else:
        verdict = "within noise"
    return PairedResult(fixed, regressed, unchanged, flaky_count, p_value, verdict)


def _passes(outcomes: Sequence[bool]) -> bool:
    # Pass rate >= 0.5, compared in integers so a tie is exactly a pass.
    return 2 * sum(outcomes) >= len(outcomes)


def pass_rate_drop_gate(
    base_rate: float | None, head_rate: float, max_drop: float, paired: PairedResult
) -> GateResult:
    """Fail when the pass rate falls by more than max_drop and the paired test calls it a regression."""
    if base_rate is None:
        return GateResult(True, f"pass rate {_pct(head_rate)}; no base run to compare with")
    drop = base_rate - head_rate
    change = f"pass rate {_pct(base_rate)} -> {_pct(head_rate)}"
    allowed = f"the allowed drop of {_points(max_drop)}"
    if drop <= max_drop + _TOLERANCE:
        return GateResult(True, f"{change}, within {allowed}")
    evidence = f"{paired.regressed} regressed, {paired.fixed} fixed, p = {paired.p_value:.3g}"
    if paired.verdict == "regression":
        return GateResult(False, f"{change}: a drop of {_points(drop)} exceeds {allowed} and is beyond noise ({evidence})")
    return GateResult(
        True,
        f"{change}: a drop of {_points(drop)} exceeds {allowed} but the paired test finds "
        f"{paired.verdict}, not a regression ({evidence})",
    )


def min_pass_rate(head_rate: float, minimum: float) -> GateResult:
    if head_rate + _TOLERANCE >= minimum:
        return GateResult(True, f"pass rate {_pct(head_rate)} meets the minimum {_pct(minimum)}")
    return GateResult(False, f"pass rate {_pct(head_rate)} is below the minimum {_pct(minimum)}")


def max_cost_increase(base_cost: float | None, head_cost: float | None, max_pct: float) -> GateResult:
    """Fail when cost rises by more than max_pct percent; an unknown cost passes (fail open)."""
    unknown = [side for side, cost in (("base", base_cost), ("head", head_cost)) if cost is None]
    if unknown:
        return GateResult(True, f"cost unknown at {' and '.join(unknown)} (no price for the model); gate not applied")
    change = f"cost {_usd(base_cost)} -> {_usd(head_cost)}"
    if head_cost <= base_cost:
        return GateResult(True, f"{change}, no increase")
    if base_cost == 0:
        return GateResult(False, f"{change}: any increase from zero exceeds the allowed {max_pct:g}%")
    increase = (head_cost - base_cost) / base_cost * 100
    if increase <= max_pct + _TOLERANCE:
        return GateResult(True, f"{change} (+{increase:.1f}%), within the allowed {max_pct:g}%")
    return GateResult(False, f"{change} (+{increase:.1f}%) exceeds the allowed {max_pct:g}%")


def max_p95_latency(p95_ms: float | None, limit_ms: float) -> GateResult:
    if p95_ms is None:
        return GateResult(True, "no latencies measured; gate not applied")
    if p95_ms <= limit_ms + _TOLERANCE:
        return GateResult(True, f"p95 latency {p95_ms:,.0f} ms is within the limit of {limit_ms:,.0f} ms")
    return GateResult(False, f"p95 latency {p95_ms:,.0f} ms exceeds the limit of {limit_ms:,.0f} ms")


def _pct(rate: float) -> str:
    return f"{rate:.1%}"


def _points(rate: float) -> str:
    return f"{rate * 100:.1f} points"


def _usd(cost: float) -> str:
    # Per-call costs are often fractions of a cent; six decimals keep them readable without 1.5e-05.
    return f"${cost:,.2f}" if cost >= 1 or cost == 0 else f"${cost:.6f}"
