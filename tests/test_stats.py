"""promptops.evals.stats: pass-rate intervals, percentiles, the paired sign test and the gates."""

from __future__ import annotations

import math
import random

import pytest

from promptops.evals.stats import (
    GateResult,
    PairedResult,
    flaky,
    flaky_cases,
    max_cost_increase,
    max_p95_latency,
    min_pass_rate,
    p50,
    p95,
    paired_test,
    pass_rate_drop_gate,
    percentile,
    sign_test_p_value,
    wilson_interval,
)

P, F = True, False


def reference_p_value(fixed: int, regressed: int) -> float:
    """The same test another way: binomial probabilities summed in log space."""
    n, k = fixed + regressed, min(fixed, regressed)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(terms)
    return min(1.0, 2 * math.exp(top) * sum(math.exp(t - top) for t in terms))


def pairs_of(*spec: tuple[int, int]) -> list[tuple[list[bool], list[bool]]]:
    """Single-repeat pairs from (base, head) 0/1 outcomes."""
    return [([bool(base)], [bool(head)]) for base, head in spec]


# --- Wilson intervals -------------------------------------------------------------------------


def test_wilson_known_values() -> None:
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=5e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-4)
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=5e-4)


def test_wilson_bounds_are_exact_at_the_extremes() -> None:
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 1) == pytest.approx((0.0, 0.7935), abs=5e-4)


def test_wilson_is_symmetric_and_contains_the_rate() -> None:
    for total in (1, 7, 40):
        for passed in range(total + 1):
            low, high = wilson_interval(passed, total)
            mirror_low, mirror_high = wilson_interval(total - passed, total)
            assert low == pytest.approx(1 - mirror_high) and high == pytest.approx(1 - mirror_low)
            assert 0.0 <= low <= passed / total <= high <= 1.0


def test_wilson_widens_with_confidence_and_narrows_with_cases() -> None:
    low90, high90 = wilson_interval(8, 10, confidence=0.90)
    low99, high99 = wilson_interval(8, 10, confidence=0.99)
    assert low99 < low90 and high90 < high99
    small, large = wilson_interval(8, 10), wilson_interval(800, 1000)
    assert large[1] - large[0] < small[1] - small[0]


def test_wilson_without_runs_is_uninformative() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("passed", "total", "confidence"), [(3, 2, 0.95), (-1, 2, 0.95), (1, 2, 0.0), (1, 2, 1.0)])
def test_wilson_rejects_impossible_input(passed: int, total: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        wilson_interval(passed, total, confidence)


# --- percentiles ------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [15, 20, 35, 40, 50]
    assert percentile(values, 5) == 15
    assert percentile(values, 30) == 20
    assert percentile(values, 40) == 20
    assert percentile(values, 50) == 35
    assert percentile(values, 100) == 50
    assert percentile(values, 0) == 15


def test_p50_and_p95_are_measured_values() -> None:
    latencies = [float(ms) for ms in range(100, 0, -1)]  # unsorted on purpose
    assert p50(latencies) == 50.0
    assert p95(latencies) == 95.0
    assert p95(range(1, 21)) == 19  # rank 0.95 * 20 = 19 exactly, not 20 from a rounding error
    assert p95([420.0]) == 420.0


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([], 50) is None
    assert p50([]) is None
    assert p95(iter(())) is None


def test_percentile_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)


# --- the sign test ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixed", "regressed", "expected"),
    [
        (0, 6, 2 * 0.5**6),  # 0.03125: the smallest one-sided table that reaches 0.05
        (0, 5, 2 * 0.5**5),  # 0.0625: five out of five is not enough
        (1, 0, 1.0),
        (0, 1, 1.0),
        (3, 3, 1.0),
        (1, 9, 2 * (1 + 10) / 2**10),
        (2, 10, 2 * (1 + 12 + 66) / 2**12),
        (0, 0, 1.0),
    ],
)
def test_sign_test_exact_values(fixed: int, regressed: int, expected: float) -> None:
    assert sign_test_p_value(fixed, regressed) == pytest.approx(expected, rel=1e-12)


def test_sign_test_is_symmetric() -> None:
    for fixed in range(12):
        for regressed in range(12):
            assert sign_test_p_value(fixed, regressed) == sign_test_p_value(regressed, fixed)


def test_sign_test_large_n_matches_a_log_space_reference() -> None:
    for fixed, regressed in [(4800, 5200), (4990, 5010), (5000, 5000), (100, 9900), (0, 10_000)]:
        got = sign_test_p_value(fixed, regressed)
        assert 0.0 <= got <= 1.0
        assert got == pytest.approx(reference_p_value(fixed, regressed), rel=1e-9, abs=1e-300)
    assert sign_test_p_value(4800, 5200) == pytest.approx(6.6e-5, rel=0.05)  # normal approximation, z = 3.99


# --- the paired test --------------------------------------------------------------------------


def test_six_regressions_are_beyond_noise() -> None:
    result = paired_test(pairs_of(*[(1, 0)] * 6, *[(1, 1)] * 20))
    assert result == PairedResult(fixed=0, regressed=6, unchanged=20, flaky=0, p_value=0.03125, verdict="regression")


def test_six_fixes_are_an_improvement() -> None:
    result = paired_test(pairs_of(*[(0, 1)] * 6, (0, 0)))
    assert (result.fixed, result.regressed, result.unchanged, result.verdict) == (6, 0, 1, "improvement")


def test_one_regression_of_one_is_within_noise() -> None:
    result = paired_test(pairs_of((1, 0)))
    assert result.p_value == 1.0 and result.verdict == "within noise"


def test_mixed_moves_are_within_noise() -> None:
    result = paired_test(pairs_of(*[(1, 0)] * 4, *[(0, 1)] * 3))
    assert result.verdict == "within noise"
    assert result.p_value == 1.0


def test_alpha_decides_significance() -> None:
    pairs = pairs_of(*[(1, 0)] * 6)
    assert paired_test(pairs, alpha=0.05).verdict == "regression"
    assert paired_test(pairs, alpha=0.01).verdict == "within noise"
    with pytest.raises(ValueError):
        paired_test(pairs, alpha=1.5)


def test_no_discordant_cases_is_no_change() -> None:
    assert paired_test(pairs_of((1, 1), (0, 0))).verdict == "no change"
    all_passing = paired_test([([P, P, P], [P, P, P])] * 50)
    assert all_passing == PairedResult(0, 0, 50, 0, 1.0, "no change")


def test_empty_suite_is_no_change() -> None:
    assert paired_test([]) == PairedResult(0, 0, 0, 0, 1.0, "no change")


def test_case_pass_is_a_rate_of_at_least_one_half() -> None:
    # 2/3 -> 1/3 regresses; 1/2 counts as a pass; repeat counts may differ between sides.
    result = paired_test([([P, P, F], [P, F, F]), ([P, F], [P, P, P, P]), ([F, F], [P, F, F, F, F])])
    assert (result.fixed, result.regressed, result.unchanged) == (0, 1, 2)


def test_flaky_cases_stay_in_the_test_by_their_majority() -> None:
    # Solid passes that now usually fail: the regression a prompt change most often causes.
    result = paired_test([([P] * 5, [P, F, F, F, F])] * 8)
    assert (result.regressed, result.flaky, result.verdict) == (8, 8, "regression")


def test_flaky_count_covers_either_side() -> None:
    result = paired_test([([P, F, P], [P, P, P]), ([P, P], [P, F]), ([F, F], [F, F]), ([P, F], [F, P])])
    assert result.flaky == 3
    assert result.fixed + result.regressed + result.unchanged == 4


def test_a_case_without_outcomes_is_rejected() -> None:
    with pytest.raises(ValueError, match="case 1"):
        paired_test([([P], [P]), ([], [P])])


def test_ten_thousand_cases_without_overflow() -> None:
    # Speed is measured in bench/, not asserted here (DESIGN.md, Tests).
    rng = random.Random(7)
    pairs = [([rng.random() < 0.8 for _ in range(3)], [rng.random() < 0.78 for _ in range(3)]) for _ in range(10_000)]
    result = paired_test(pairs)
    assert result.fixed + result.regressed + result.unchanged == 10_000
    assert result.p_value == pytest.approx(reference_p_value(result.fixed, result.regressed), rel=1e-9)
    # Every discordant case in one direction: p is far below float's range and comes out 0, not an error.
    assert paired_test(pairs_of(*[(1, 0)] * 10_000)).p_value == 0.0


# --- flakiness --------------------------------------------------------------------------------


def test_flaky_means_the_repeats_disagree() -> None:
    assert flaky([P, F])
    assert flaky([F, F, P])
    assert not flaky([P, P, P])
    assert not flaky([F])
    assert not flaky([])


def test_flaky_cases_are_named_in_order() -> None:
    outcomes = {"refund": [P, F, P], "weather": [F, F], "billing": [P, P], "login": [F, P]}
    assert flaky_cases(outcomes) == ["refund", "login"]
    assert flaky_cases({}) == []


# --- gates ------------------------------------------------------------------------------------

REGRESSION = paired_test(pairs_of(*[(1, 0)] * 10, *[(1, 1)] * 90))
NOISE = paired_test(pairs_of(*[(1, 0)] * 3, *[(1, 1)] * 97))


def test_drop_beyond_noise_and_limit_fails() -> None:
    gate = pass_rate_drop_gate(1.0, 0.9, 0.02, REGRESSION)
    assert not gate.passed
    assert gate.reason == (
        "pass rate 100.0% -> 90.0%: a drop of 10.0 points exceeds the allowed drop of 2.0 points "
        "and is beyond noise (10 regressed, 0 fixed, p = 0.00195)"
    )


def test_drop_within_noise_passes_and_says_so() -> None:
    gate = pass_rate_drop_gate(1.0, 0.97, 0.02, NOISE)
    assert gate.passed
    assert "exceeds the allowed drop" in gate.reason
    assert "within noise, not a regression" in gate.reason
    assert "3 regressed, 0 fixed, p = 0.25" in gate.reason


def test_drop_within_the_limit_passes_even_when_significant() -> None:
    gate = pass_rate_drop_gate(1.0, 0.9, 0.15, REGRESSION)
    assert gate == GateResult(True, "pass rate 100.0% -> 90.0%, within the allowed drop of 15.0 points")


def test_drop_exactly_at_the_limit_passes_despite_float_error() -> None:
    assert 0.9 - 0.88 > 0.02  # the binary rounding the gate must tolerate
    assert pass_rate_drop_gate(0.9, 0.88, 0.02, REGRESSION).passed


def test_a_rise_passes_and_no_base_passes() -> None:
    assert pass_rate_drop_gate(0.8, 0.9, 0.0, paired_test([])).passed
    gate = pass_rate_drop_gate(None, 0.9, 0.02, paired_test([]))
    assert gate == GateResult(True, "pass rate 90.0%; no base run to compare with")


def test_min_pass_rate() -> None:
    assert min_pass_rate(0.95, 0.9) == GateResult(True, "pass rate 95.0% meets the minimum 90.0%")
    assert min_pass_rate(0.9, 0.9).passed
    assert min_pass_rate(0.85, 0.9) == GateResult(False, "pass rate 85.0% is below the minimum 90.0%")


def test_max_cost_increase() -> None:
    assert max_cost_increase(0.001, 0.0012, 25) == GateResult(
        True, "cost $0.001000 -> $0.001200 (+20.0%), within the allowed 25%"
    )
    assert max_cost_increase(0.001, 0.00125, 25).passed  # exactly at the limit
    assert max_cost_increase(0.001, 0.0015, 25) == GateResult(
        False, "cost $0.001000 -> $0.001500 (+50.0%) exceeds the allowed 25%"
    )
    assert max_cost_increase(2.0, 1.5, 0) == GateResult(True, "cost $2.00 -> $1.50, no increase")
    assert max_cost_increase(0.0, 0.0, 25).passed
    assert max_cost_increase(0.0, 0.001, 25) == GateResult(
        False, "cost $0.00 -> $0.001000: any increase from zero exceeds the allowed 25%"
    )


def test_unknown_cost_passes_with_a_reason() -> None:
    assert max_cost_increase(None, 0.001, 25) == GateResult(
        True, "cost unknown at base (no price for the model); gate not applied"
    )
    assert max_cost_increase(0.001, None, 25).reason.startswith("cost unknown at head")
    assert max_cost_increase(None, None, 25).reason.startswith("cost unknown at base and head")


def test_max_p95_latency() -> None:
    assert max_p95_latency(3200.0, 4000) == GateResult(True, "p95 latency 3,200 ms is within the limit of 4,000 ms")
    assert max_p95_latency(4000.0, 4000).passed
    assert max_p95_latency(4210.0, 4000) == GateResult(False, "p95 latency 4,210 ms exceeds the limit of 4,000 ms")
    assert max_p95_latency(None, 4000) == GateResult(True, "no latencies measured; gate not applied")
