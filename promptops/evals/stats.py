"""Noise-aware statistics for eval results: pass-rate intervals, the base -> head verdict on case
outcomes (confirmed flips and a paired test), latency percentiles with intervals and a rank test
for a latency change, and the gates built on them.

Pure functions on plain data; nothing here reads files, calls models or prints.

The model, and its limits
-------------------------

Every case is asked ``repeat`` times at base and at head (its *initial samples*). Each sample
passes or fails; a call that got no answer is no sample. A side *passes* a case when at least
half of its samples pass.

- **Confirmation.** A case is *flagged* when its sides disagree (one passes, the other fails) or
  when a side's samples disagree. A flagged case is asked ``confirm`` more times on each side
  (default 2), each sample its own call. Afterwards a case is

  * *regressed*: every base sample passes and every head sample fails;
  * *fixed*: the opposite;
  * *flaky*: the samples of at least one side disagree;
  * *unchanged*: every sample on both sides agrees.

  With one sample a side and ``confirm: 0`` a flip is regressed or fixed unconfirmed.

- **Why confirmation answers "did anything change".** The exact sign test used before asked only
  whether flips are symmetric: 4 regressions of 6 cases gave p = 0.125 and passed, although a
  deterministic model that the change did not touch flips *no* case. Under "the change did
  nothing" (H0) the samples of a case are independent draws with one pass probability p on both
  sides, so a case whose initial samples went from all-pass to all-fail (a *candidate*) is
  confirmed regressed with probability p^c (1 - p)^c <= 4^-c (c = its extra samples a side):
  1/16 at c = 2, whatever p is. The number of confirmed regressions among K candidates is then at
  most Poisson-binomial with those bounds, and ``p_flips`` is that tail: a valid, conservative
  p-value for "this many confirmed regressions are noise".

- **The verdict.** A suite *regresses* when either holds:

  A. its confirmed regressions net of confirmed fixes are positive and, when the suite has any
     flaky case (the model is noisy), ``p_flips`` < alpha / 2. A suite with no flaky case at all
     behaves deterministically, and its confirmed flips are taken as they are: that is what lets
     one deterministic regression in 20 cases fail a 2-point gate.
  B. a paired test over every sample: per case the difference d = (base pass share) - (head pass
     share) over all its samples, and the sum of the d against its exact sign-flip distribution
     (under H0 base and head samples of a case are exchangeable, so each d is as likely to be
     negated; flagging and confirmation treat both sides alike, so this survives the selection).
     One-sided, at alpha / 2. Exact while at most 30 cases have d != 0; beyond that the normal
     approximation to the same distribution (a sum of many independent symmetric bounded terms).

  The ``max_pass_rate_drop`` gate fails when A holds and the net confirmed regressions exceed
  the allowed share of the paired cases, or when B holds and the mean drop d exceeds it. An
  improvement is the mirror image. Otherwise flips and flaky cases are "within noise".
  Flaky cases are named and reported apart; they count in B through their samples only.

- **Measured false alarms and misses** (tests/evals/test_verdict_simulation.py, 1,000 seeded trials of
  the protocol each; the same through the stub server in bench/verdict_bench.py): an unchanged
  prompt on a model wrong 20% or 50% of the time, 20 to 200 cases, repeat 1 or 3: at most 3%
  false alarms (the union of A and B at alpha / 2 each is bounded by alpha = 5%). Caught: 4 of 6
  deterministic regressions and 1 of 20, always; 15 of 100 cases broken under 20% noise, 99% of
  the time (repeat 1 or 3); a uniform rise of the error rate from 20% to 35%, 86% of the time at
  repeat 1 and always at repeat 3.

- **Limits.** Samples of one case must be independent draws: a provider that caches answers
  across calls, or a seed shared by every sample, makes a noisy case look deterministic. A suite
  that is deterministic except for one coin-flip case fails when that case happens to confirm
  (probability 1/64 at repeat 1, confirm 2). ``confirm: 0`` with repeat 1 counts every flip of a
  noisy model as a regression. Shifts that stay on one side of the majority line (5/5 -> 3/5)
  are visible only to B. A uniform shift at repeat 1 is near the information the samples hold:
  raise ``repeat`` for noisy models.

- **Pass-rate intervals** are Wilson score intervals: unlike the normal ("Wald") interval they stay
  inside [0, 1] and remain sensible at 0/n and n/n, where eval suites usually live.

- **Latency.** Percentiles are nearest-rank (always a measured value), with distribution-free
  intervals from order statistics (the interval's ranks come from Binomial(n, q); an end that
  would need a rank beyond the sample is unknown). A latency *change* is called only when a
  two-sided Mann-Whitney rank test over the fresh latencies of both sides gives p < alpha and
  the shift is at least 5% of the base median; its size is the Hodges-Lehmann shift (the
  median of head - base over all pairs) with its distribution-free interval. Base and head
  calls are sent in turn, so warm connections and a machine growing busier land on both. Only
  latencies measured in this run count: a cached answer has no fresh latency, and the first call
  of each worker and provider (client warm-up) is not timed.
  The rank test assumes independent samples; base and head latencies of the same case are
  positively correlated, which makes it conservative. Identical requests at base and head are
  sent once, so their latencies are the same number on both sides and cannot make a change.

- **Retrieval** (``retrieval_verdict``, the recall gates). A case that names
  ``expected_sources`` is scored on the passages it got: hit@k, recall@k, reciprocal rank. Given
  the cache, retrieval is deterministic: the same corpus, chunking, model and query give the same
  vectors (cached by content) and the same exact search, so asking again gives the same answer,
  and a retrieval that the change did not touch flips no case. Each case is therefore one sample a
  side that needs no confirmation, and the suite is what rule A calls clean (no flaky case): its
  flips in hit@k are taken as they are, lost net of gained, through ``paired_test`` like pass
  rates; the mean recall@k drop over the cases scored on both sides is measured exactly, with no
  interval, and a drop with no hit lost (a case that finds one of two sources) is still a
  regression. What this does not cover is the choice of cases: a suite of 5 queries says little
  about the next 5,000, and no test here can say how much. Limits: a provider whose embeddings are
  not deterministic shows only at the first embedding (later runs read the cache); a reranker
  answer is cached too.

- **Judged retrieval** (``judged_change``: context precision and context recall, a suite's
  ``retrieval.judge``). Per case a figure in 0..1 from an LLM judge: precision from one verdict per
  retrieved passage (relevant to the question or not, rank-aware), recall from one verdict per claim
  of the expected answer (supported by the passages or not). Unlike hit@k, a judge is a noisy
  instrument, so base against head is rule B's paired sign-flip test over the cases judged on both
  sides: d = base figure - head figure per case (on a grid of 0.01, which keeps the exact
  distribution small), one-sided at alpha / 2 each way; a regression needs a mean fall with
  p_drop < alpha / 2. What keeps the judge's noise out where nothing changed is the cache: a verdict
  is cached by its request (question and passage, or claims and passages), so a passage that both
  sides retrieved gets one verdict, the same at base and head, and a case whose passages did not
  change has d = 0 exactly, whatever the judge's error rate. Only passages that differ carry noise,
  and under "the change did not alter retrieval quality" the judge errs on them alike at base and
  head, so each d is symmetric and the test holds its level.
  Measured (tests/evals/test_verdict_simulation.py, 400 seeded trials a scenario; four passages a
  case, half the cases given other passages as relevant as theirs, a judge wrong 10% or 30% of the
  time): at most 3% false alarms on either figure, 10 to 100 cases. Caught, when 30% of the cases
  get three irrelevant passages holding none of the expected answer's claims: 69% of the time on
  30 cases with a judge wrong 10%, always on 100 (73% and 79% with a judge wrong 30%); 2% on 10
  cases. Through litellm, the cache and the stub's ``WordJudge`` wrong 20% of the time
  (tests/evals/test_context_noise.py, 40 cases, 30 of them given other passages): 2 false alarms
  on precision and 1 on recall in 40 trials; passages that lost the answer caught in every trial.
  Why no confirmation, unlike pass rates: asking the judge again would reduce only its sampling
  noise (small at temperature 0), not its error on a given passage, which comes back the same at
  every asking and is what makes d noisy across cases; so a moved case is never taken as it is
  (rule A), even from a judge that answers consistently, and the sign-flip test carries the
  verdict. Limits: a judge that errs one way on one kind of passage (it favours long ones, say)
  biases d, and no test here can tell that from a real change. The sign-flip test needs moved
  cases: with fewer than 6 cases whose passages changed no p-value goes below 0.025, so a small
  suite shows a fall as "within noise" with its p-value; recall@k, which is exact, says more
  there. A case is judged once a side (its passages are the same for every sample), and the judge
  is the side's ``defaults.judge`` (or the suite's ``retrieval.model``): judging base and head
  with different models compares the models too.

- **Gates** whose input is unknown (no price for the model, no latencies, no base run) pass and
  say why: an unpriced self-hosted model would otherwise fail every PR, and the cost stage
  already reports the missing price.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist, fmean
from typing import Literal

from promptops.model.evals import CaseStatus, GateResult, JudgedChange, LatencyChange, PairedResult, Verdict
from promptops.report.formatting import percent

ALPHA = 0.05
DEFAULT_CONFIRM = 2
EXACT_SIGN_FLIP_CASES = 30  # beyond this many cases with d != 0, the normal approximation
MIN_LATENCIES = 5  # fewer fresh latencies on a side than this: no latency change is called
MIN_LATENCY_SHIFT = 0.05  # a shift under 5% of the base median is no change, however sure the rank test is
JUDGED_GRID = 100  # judged figures are compared in hundredths
_MAX_PAIRWISE = 250_000  # base x head latency pairs for the shift estimate; above, quantiles stand in

# Rates and costs arrive as float quotients (0.9 - 0.88 > 0.02 in binary);
# a gate must not fail on the last bit of a value exactly at its limit.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class CasePair:
    """One case's samples on each side: the first ``*_initial`` were asked first, the rest to confirm."""

    base: tuple[bool, ...]
    head: tuple[bool, ...]
    base_initial: int = 1
    head_initial: int = 1


# -- pass rates --------------------------------------------------------------------------------------

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


def passes(outcomes: Sequence[bool]) -> bool:
    """Whether a side passes a case: at least half its samples pass (compared in integers, so a tie passes)."""
    return 2 * sum(outcomes) >= len(outcomes)


def flaky(outcomes: Sequence[bool]) -> bool:
    """Whether the samples of one side disagree."""
    return 0 < sum(outcomes) < len(outcomes)


def flaky_cases(outcomes_by_case: Mapping[str, Sequence[bool]]) -> list[str]:
    """Ids of the flaky cases of one side, in the mapping's order."""
    return [case_id for case_id, outcomes in outcomes_by_case.items() if flaky(outcomes)]


def needs_confirmation(base: Sequence[bool], head: Sequence[bool]) -> bool:
    """Whether a case is asked again: its sides disagree, or a side's samples do."""
    return passes(base) != passes(head) or flaky(base) or flaky(head)


def case_status(base: Sequence[bool], head: Sequence[bool]) -> CaseStatus:
    if not base or not head:
        raise ValueError("a case without samples on one side is new or removed, not a pair")
    if flaky(base) or flaky(head):
        return CaseStatus.FLAKY
    if base[0] and not head[0]:
        return CaseStatus.REGRESSED
    if head[0] and not base[0]:
        return CaseStatus.FIXED
    return CaseStatus.UNCHANGED


# -- the paired verdict ------------------------------------------------------------------------------

def paired_test(pairs: Sequence[CasePair], alpha: float = ALPHA) -> PairedResult:
    """The base -> head verdict over paired cases (see the module docstring: rules A and B)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    counts = {status: 0 for status in CaseStatus}
    bounds: dict[CaseStatus, list[float]] = {CaseStatus.REGRESSED: [], CaseStatus.FIXED: []}
    confirmed = True
    diffs: list[Fraction] = []
    for pair in pairs:
        status = case_status(pair.base, pair.head)
        counts[status] += 1
        if status in (CaseStatus.REGRESSED, CaseStatus.FIXED) and min(len(pair.base), len(pair.head)) < 2:
            confirmed = False
        for direction, bound in _candidate_bounds(pair):
            bounds[direction].append(bound)
        diffs.append(Fraction(sum(pair.base), len(pair.base)) - Fraction(sum(pair.head), len(pair.head)))
    regressed, fixed, flaky_count = counts[CaseStatus.REGRESSED], counts[CaseStatus.FIXED], counts[CaseStatus.FLAKY]
    p_flips_r = _poisson_binomial_tail(bounds[CaseStatus.REGRESSED], regressed)
    p_flips_f = _poisson_binomial_tail(bounds[CaseStatus.FIXED], fixed)
    p_drop, p_rise = sign_flip_p_values(diffs)
    by_flips = _by_flips(regressed - fixed, flaky_count == 0, p_flips_r, p_flips_f, alpha)
    drop = float(sum(diffs) / len(diffs)) if diffs else 0.0
    by_samples: Literal["regression", "improvement", ""] = (
        "regression" if drop > 0 and p_drop < alpha / 2 else "improvement" if drop < 0 and p_rise < alpha / 2 else "")
    return PairedResult(
        cases=len(pairs), regressed=regressed, fixed=fixed, flaky=flaky_count, unchanged=counts[CaseStatus.UNCHANGED],
        confirmed=confirmed, candidates_regressed=len(bounds[CaseStatus.REGRESSED]),
        candidates_fixed=len(bounds[CaseStatus.FIXED]), p_flips_regressed=p_flips_r, p_flips_fixed=p_flips_f,
        drop=drop, p_drop=p_drop, p_rise=p_rise, alpha=alpha, by_flips=by_flips, by_samples=by_samples,
        verdict=_verdict(by_flips, by_samples, regressed + fixed + flaky_count),
    )


def _candidate_bounds(pair: CasePair) -> list[tuple[CaseStatus, float]]:
    """For a case whose initial samples flipped all one way: the bound on its chance, under no change,
    of confirming that flip (p^c (1-p)^c <= 4^-c, c its extra samples a side)."""
    extra = min(len(pair.base) - pair.base_initial, len(pair.head) - pair.head_initial)
    first_base, first_head = pair.base[: pair.base_initial], pair.head[: pair.head_initial]
    if not first_base or not first_head:
        return []
    if all(first_base) and not any(first_head):
        return [(CaseStatus.REGRESSED, 4.0 ** -extra)]
    if all(first_head) and not any(first_base):
        return [(CaseStatus.FIXED, 4.0 ** -extra)]
    return []


def _by_flips(net: int, clean: bool, p_regressed: float, p_fixed: float,
              alpha: float) -> Literal["regression", "improvement", ""]:
    """Rule A: confirmed flips, taken as they are in a suite with no flaky case, else only beyond noise."""
    if net > 0 and (clean or p_regressed < alpha / 2):
        return "regression"
    if net < 0 and (clean or p_fixed < alpha / 2):
        return "improvement"
    return ""


def _verdict(by_flips: str, by_samples: str, moved: int) -> Verdict:
    if "regression" in (by_flips, by_samples):
        return "regression"
    if "improvement" in (by_flips, by_samples):
        return "improvement"
    return "within noise" if moved else "no change"


def _poisson_binomial_tail(probabilities: Sequence[float], at_least: int) -> float:
    """P(at least ``at_least`` successes) among independent trials with these success probabilities."""
    if at_least <= 0:
        return 1.0
    if at_least > len(probabilities):
        return 0.0
    # dist[k] = P(exactly k successes so far), k capped at at_least ("or more").
    dist = [1.0] + [0.0] * at_least
    for p in probabilities:
        for k in range(at_least, -1, -1):
            stay = dist[k] * (1 - p) if k < at_least else dist[k]
            dist[k] = stay + (dist[k - 1] * p if k > 0 else 0.0)
    return min(1.0, dist[at_least])


def sign_flip_p_values(diffs: Sequence[Fraction]) -> tuple[float, float]:
    """One-sided p-values (drop, rise) of sum(diffs) under random sign flips of each difference."""
    nonzero = [d for d in diffs if d != 0]
    if not nonzero:
        return 1.0, 1.0
    scale = math.lcm(*(d.denominator for d in nonzero))
    values = [abs(int(d * scale)) for d in nonzero]
    observed = int(sum(nonzero) * scale)
    if len(values) > EXACT_SIGN_FLIP_CASES:
        # The sum of many independent symmetric terms +-v: normal, variance sum(v^2), with a
        # continuity correction of half the lattice's spacing (flipping one sign moves the sum by 2v).
        sd = math.sqrt(sum(v * v for v in values))
        half_spacing = math.gcd(*values)
        normal = NormalDist()
        return (1 - normal.cdf((observed - half_spacing) / sd), normal.cdf((observed + half_spacing) / sd))
    ways: dict[int, int] = {0: 1}
    for value in values:
        shifted: dict[int, int] = {}
        for total, count in ways.items():
            for signed in (value, -value):
                shifted[total + signed] = shifted.get(total + signed, 0) + count
        ways = shifted
    everything = 1 << len(values)
    at_least = sum(count for total, count in ways.items() if total >= observed)
    at_most = sum(count for total, count in ways.items() if total <= observed)
    return at_least / everything, at_most / everything


def pass_rate_drop_gate(base_rate: float | None, head_rate: float, max_drop: float,
                        paired: PairedResult | None) -> GateResult:
    """Fail when confirmed regressions (rule A) or the paired test (rule B) show a drop beyond ``max_drop``."""
    if base_rate is None or paired is None:
        return GateResult(True, f"pass rate {_pct(head_rate)}; no base run to compare with")
    change = f"pass rate {_pct(base_rate)} -> {_pct(head_rate)}"
    allowed = f"the allowed drop of {_points(max_drop)}"
    net_share = paired.net_regressed / paired.cases if paired.cases else 0.0
    if paired.by_flips == "regression" and net_share > max_drop + _TOLERANCE:
        cases = f"{paired.net_regressed} of {paired.cases} cases"
        how = "confirmed" if paired.confirmed else "flipped (unconfirmed)"
        return GateResult(False, f"{change}: {cases} {how} regressed net of fixes, {_points(net_share)}, "
                                 f"more than {allowed} ({paired.evidence()})")
    if paired.by_samples == "regression" and paired.drop > max_drop + _TOLERANCE:
        return GateResult(False, f"{change}: over all samples the pass rate falls {_points(paired.drop)}, "
                                 f"more than {allowed}, beyond noise ({paired.evidence()})")
    if paired.verdict == "regression":
        return GateResult(True, f"{change}: a regression beyond noise, but within {allowed} ({paired.evidence()})")
    if paired.regressed or paired.flaky or base_rate - head_rate > max_drop + _TOLERANCE:
        return GateResult(True, f"{change}: {paired.verdict}, not a regression beyond {allowed} ({paired.evidence()})")
    return GateResult(True, f"{change}, within {allowed}")


def min_pass_rate(head_rate: float, minimum: float, base_rate: float | None = None,
                  base_label: str = "the base") -> GateResult:
    return _at_least("pass rate", head_rate, minimum, base_rate, base_label)


def _at_least(figure: str, head: float, minimum: float, base: float | None, base_label: str,
              show: Callable[[float], str] | None = None) -> GateResult:
    """A floor gate on a rate or score: ``figure`` names it, ``show`` writes its values (default: as a percentage);
    a base below the floor too makes the failure preexisting."""
    show = show or _pct
    if head + _TOLERANCE >= minimum:
        return GateResult(True, f"{figure} {show(head)} meets the minimum {show(minimum)}")
    reason = f"{figure} {show(head)} is below the minimum {show(minimum)}"
    if base is not None and base + _TOLERANCE < minimum:
        return GateResult(False, f"{reason}; also fails on {base_label} ({show(base)})", preexisting=True)
    return GateResult(False, reason)


def max_cost_increase(base_cost: float | None, head_cost: float | None, max_pct: float,
                      kind: str = "measured") -> GateResult:
    """Fail when cost rises by more than max_pct percent; an unknown cost passes (fail open).

    ``kind`` says which cost it is: "measured" on eval answers, or "estimated" from the files.
    """
    unknown = [side for side, cost in (("base", base_cost), ("head", head_cost)) if cost is None]
    if unknown:
        return GateResult(True, f"{kind} cost unknown at {' and '.join(unknown)} (no price for the model); "
                                "gate not applied")
    assert base_cost is not None and head_cost is not None
    change = f"{kind} cost per call {_usd(base_cost)} -> {_usd(head_cost)}"
    if head_cost <= base_cost:
        return GateResult(True, f"{change}, no increase")
    if base_cost == 0:
        return GateResult(False, f"{change}: any increase from zero exceeds the allowed {max_pct:g}%")
    increase = (head_cost - base_cost) / base_cost * 100
    if increase <= max_pct + _TOLERANCE:
        return GateResult(True, f"{change} (+{increase:.1f}%), within the allowed {max_pct:g}%")
    return GateResult(False, f"{change} (+{increase:.1f}%) exceeds the allowed {max_pct:g}%")


def max_p95_latency(p95_ms: float | None, limit_ms: float, base_p95_ms: float | None = None,
                    base_label: str = "the base") -> GateResult:
    if p95_ms is None:
        return GateResult(True, "no fresh latency measured (cached answers keep none); gate not applied")
    if p95_ms <= limit_ms + _TOLERANCE:
        return GateResult(True, f"p95 latency {p95_ms:,.0f} ms is within the limit of {limit_ms:,.0f} ms")
    reason = f"p95 latency {p95_ms:,.0f} ms exceeds the limit of {limit_ms:,.0f} ms"
    if base_p95_ms is not None and base_p95_ms > limit_ms + _TOLERANCE:
        return GateResult(False, f"{reason}; also fails on {base_label} ({base_p95_ms:,.0f} ms)", preexisting=True)
    return GateResult(False, reason)


# -- latency -----------------------------------------------------------------------------------------

def percentile(values: Iterable[float], pct: float) -> float | None:
    """Nearest-rank percentile (pct in 0..100); None when there are no values."""
    if not 0 <= pct <= 100:
        raise ValueError(f"pct must be within 0..100, got {pct}")
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[_rank(pct, len(ordered)) - 1]


def _rank(pct: float, n: int) -> int:
    # pct * n first: exact for whole percents, where pct / 100 * n is not (0.95 * 20).
    return max(1, math.ceil(pct * n / 100))


def p50(values: Iterable[float]) -> float | None:
    return percentile(values, 50)


def p95(values: Iterable[float]) -> float | None:
    return percentile(values, 95)


@dataclass(frozen=True)
class Quantile:
    value: float
    low: float | None  # None: the sample is too small to bound it on this side
    high: float | None


def quantile_with_interval(values: Iterable[float], pct: float, confidence: float = 0.95) -> Quantile | None:
    """The nearest-rank percentile and a distribution-free interval from order statistics.

    The number of values below the true q-quantile is Binomial(n, q); the interval's ends are the
    order statistics at that distribution's alpha/2 and 1 - alpha/2 points, so it covers the true
    quantile at least ``confidence`` of the time, whatever the distribution.
    """
    ordered = sorted(values)
    if not ordered:
        return None
    n, q, tail = len(ordered), pct / 100, (1 - confidence) / 2
    value = ordered[_rank(pct, n) - 1]
    cdf, low_rank, high_rank = 0.0, 0, n + 1
    for k in range(n + 1):
        cdf += _binomial_pmf(k, n, q)
        if cdf <= tail:
            low_rank = k + 1  # rank k+1 still has at most tail probability of lying above the quantile
        if cdf >= 1 - tail:
            high_rank = k + 1
            break
    low = ordered[low_rank - 1] if low_rank >= 1 else None
    high = ordered[high_rank - 1] if high_rank <= n else None
    return Quantile(value, low, high)


def _binomial_pmf(k: int, n: int, p: float) -> float:
    if p <= 0 or p >= 1:
        return float(k == (0 if p <= 0 else n))
    log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)
    return math.exp(log)


def latency_change(base: Sequence[float], head: Sequence[float], alpha: float = ALPHA) -> LatencyChange:
    """Whether head latencies differ from base ones beyond noise: a rank test and the shift with its interval."""
    if min(len(base), len(head)) < MIN_LATENCIES:
        return LatencyChange(len(base), len(head), None, None, None, None, False)
    p_value = mann_whitney_p(base, head)
    shift, low, high = hodges_lehmann(base, head, 1 - alpha)
    # A shift too small to matter is no change, however sure: thousands of calls make 2 ms "significant".
    worth_saying = abs(shift) >= MIN_LATENCY_SHIFT * (p50(base) or 0.0)
    return LatencyChange(len(base), len(head), shift, low, high, p_value, p_value < alpha and worth_saying)


def mann_whitney_p(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U test: normal approximation with tie correction and continuity correction."""
    n, m = len(x), len(y)
    ranked = sorted([(value, 0) for value in x] + [(value, 1) for value in y])
    rank_sum_x, ties, index = 0.0, 0.0, 0
    while index < len(ranked):
        end = index
        while end + 1 < len(ranked) and ranked[end + 1][0] == ranked[index][0]:
            end += 1
        mid_rank = (index + end) / 2 + 1
        size = end - index + 1
        ties += size ** 3 - size
        rank_sum_x += mid_rank * sum(1 for _, side in ranked[index : end + 1] if side == 0)
        index = end + 1
    u = rank_sum_x - n * (n + 1) / 2
    total = n + m
    variance = n * m / 12 * ((total + 1) - ties / (total * (total - 1)))
    if variance <= 0:
        return 1.0  # every value the same
    z = (abs(u - n * m / 2) - 0.5) / math.sqrt(variance)
    return min(1.0, 2 * (1 - NormalDist().cdf(max(z, 0.0))))


def hodges_lehmann(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """The shift of ``y`` over ``x`` (median of y_j - x_i) and its distribution-free interval.

    Over 250,000 pairs, each side stands in as evenly spaced quantiles of itself (500 at most), so
    the estimate stays a few milliseconds of CPU for any suite.
    """
    x, y = _thinned(sorted(x)), _thinned(sorted(y))
    diffs = sorted(b - a for a in x for b in y)
    n, m, count = len(x), len(y), len(diffs)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    k = max(0, math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12)))
    middle = count // 2
    median = diffs[middle] if count % 2 else (diffs[middle - 1] + diffs[middle]) / 2
    return median, diffs[k], diffs[count - 1 - k]


def _thinned(ordered: list[float]) -> list[float]:
    limit = int(math.sqrt(_MAX_PAIRWISE))
    if len(ordered) <= limit:
        return ordered
    return [ordered[round(i * (len(ordered) - 1) / (limit - 1))] for i in range(limit)]


def _pct(rate: float) -> str:
    return percent(rate * 100)


def _points(rate: float) -> str:
    return f"{rate * 100:.1f} points"


def _usd(cost: float) -> str:
    # Per-call costs are often fractions of a cent; six decimals keep them readable without 1.5e-05.
    return f"${cost:,.2f}" if cost >= 1 or cost == 0 else f"${cost:.6f}"


# -- retrieval ----------------------------------------------------------------------------------------

def retrieval_verdict(hits: Sequence[tuple[bool, bool]], drop: float) -> Verdict:
    """Base -> head for retrieval (see "Retrieval" above): hit@k flips through ``paired_test``, each case
    one deterministic sample a side; a recall drop without a lost hit still moves the verdict."""
    paired = paired_test([CasePair((base,), (head,)) for base, head in hits]) if hits else None
    verdict: Verdict = paired.verdict if paired is not None else "no change"
    if verdict in ("no change", "within noise") and abs(drop) > _TOLERANCE:
        return "regression" if drop > 0 else "improvement"
    return verdict


def min_recall(head_recall: float, minimum: float, k: int, base_recall: float | None = None,
               base_label: str = "the base") -> GateResult:
    return _at_least(f"recall@{k}", head_recall, minimum, base_recall, base_label)


def recall_drop_gate(base_recall: float | None, head_recall: float, drop: float, max_drop: float, paired: int,
                     lost: int) -> GateResult:
    """Fail when mean recall@k over the cases scored on both sides falls by more than ``max_drop``
    (deterministic retrieval: the drop is exact, not an estimate)."""
    if base_recall is None or not paired:
        return GateResult(True, f"recall {_pct(head_recall)}; no case scored at base to compare with")
    change = f"recall {_pct(base_recall)} -> {_pct(head_recall)} over {paired} case(s) scored on both sides"
    if drop > max_drop + _TOLERANCE:
        return GateResult(False, f"{change}: falls {_points(drop)} ({lost} case(s) lost every expected source), "
                                 f"more than the allowed drop of {_points(max_drop)}")
    return GateResult(True, f"{change}, within the allowed drop of {_points(max_drop)}")


def judged_change(pairs: Sequence[tuple[float, float]], alpha: float = ALPHA) -> JudgedChange:
    """Base -> head for a judged figure over the cases judged on both sides, (base, head) a case (see "Judged
    retrieval" above): the paired sign-flip test of rule B, the judge being a noisy instrument."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    diffs = [Fraction(round((base - head) * JUDGED_GRID), JUDGED_GRID) for base, head in pairs]
    p_drop, p_rise = sign_flip_p_values(diffs)
    base_mean = fmean(base for base, _ in pairs) if pairs else 0.0
    head_mean = fmean(head for _, head in pairs) if pairs else 0.0
    moved = sum(d != 0 for d in diffs)
    verdict: Verdict = ("regression" if base_mean - head_mean > _TOLERANCE and p_drop < alpha / 2 else
                        "improvement" if head_mean - base_mean > _TOLERANCE and p_rise < alpha / 2 else
                        "within noise" if moved else "no change")
    return JudgedChange(len(pairs), base_mean, head_mean, moved, p_drop, p_rise, verdict)


def min_judged(figure: str, head: float | None, minimum: float, base: float | None = None,
               base_label: str = "the base") -> GateResult:
    """A floor on a judged figure's mean at head (``figure``: "context precision"); not judged: the gate passes."""
    if head is None:
        return GateResult(True, f"{figure} not judged at head (set retrieval.judge in the suite); gate not applied")
    return _at_least(figure, head, minimum, base, base_label, show=lambda score: f"{score:.2f}")


def judged_drop_gate(figure: str, change: JudgedChange | None, max_drop: float) -> GateResult:
    """Fail when a judged figure falls beyond noise (``judged_change``) by more than ``max_drop``."""
    if change is None:
        return GateResult(True, f"{figure} not judged on both sides; gate not applied")
    moved = f"{figure} {change.base:.2f} -> {change.head:.2f} over {change.paired} case(s) judged on both sides"
    evidence = f"{change.moved} moved, paired sign-flip test p = {change.p_drop:.2g}"
    if change.verdict == "regression" and change.drop > max_drop + _TOLERANCE:
        return GateResult(False, f"{moved}: falls {change.drop:.2f} beyond noise ({evidence}), more than the allowed "
                                 f"{max_drop:.2f}")
    if change.drop > max_drop + _TOLERANCE:
        return GateResult(True, f"{moved}: {change.verdict}, not a fall beyond noise ({evidence})")
    return GateResult(True, f"{moved}, within the allowed drop of {max_drop:.2f}")
