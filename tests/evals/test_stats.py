"""promptops.evals.stats: pass-rate intervals, percentiles and their intervals, the confirmed-flip verdict and
the paired sign-flip test, the latency rank test, and the gates. (Their false alarms and misses over many
seeded trials: tests/evals/test_verdict_simulation.py.)"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from itertools import product
from statistics import NormalDist

import pytest

from promptops.evals.stats import (
    CasePair,
    CaseStatus,
    GateResult,
    case_status,
    flaky,
    flaky_cases,
    hodges_lehmann,
    judged_change,
    judged_drop_gate,
    latency_change,
    mann_whitney_p,
    max_cost_increase,
    max_p95_latency,
    min_judged,
    min_pass_rate,
    needs_confirmation,
    p50,
    p95,
    paired_test,
    pass_rate_drop_gate,
    percentile,
    quantile_with_interval,
    sign_flip_p_values,
    wilson_interval,
)

P, F = True, False


def pairs_of(*spec: tuple[str, str], initial: int = 1) -> list[CasePair]:
    """Pairs from sample strings: ("PPP", "FFF") is three passes at base, three failures at head."""
    return [CasePair(tuple(c == "P" for c in base), tuple(c == "P" for c in head), initial, initial)
            for base, head in spec]


def brute_sign_flip(diffs: list[Fraction]) -> tuple[float, float]:
    """The sign-flip p-values by enumerating every sign pattern."""
    observed = sum(diffs)
    totals = [sum(sign * d for sign, d in zip(signs, diffs)) for signs in product((1, -1), repeat=len(diffs))]
    return (sum(t >= observed for t in totals) / len(totals), sum(t <= observed for t in totals) / len(totals))


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


# --- quantile intervals -------------------------------------------------------------------------


def test_quantile_interval_covers_by_order_statistics() -> None:
    values = [float(v) for v in range(1, 101)]
    median = quantile_with_interval(values, 50)
    assert median is not None and median.value == 50.0
    # Binomial(100, 0.5): the 95% ranks are 40 and 61 (the textbook table).
    assert (median.low, median.high) == (40.0, 61.0)
    top = quantile_with_interval(values, 95)
    assert top is not None and top.value == 95.0 and top.low is not None and top.low < 95 < (top.high or 101)


def test_a_small_sample_cannot_bound_a_high_quantile() -> None:
    q = quantile_with_interval([120.0, 130.0, 150.0, 170.0, 400.0], 95)
    assert q is not None and q.value == 400.0 and q.high is None  # five values say nothing above the largest
    assert quantile_with_interval([], 50) is None


def test_quantile_interval_coverage_is_at_least_its_confidence() -> None:
    rng = random.Random(5)
    covered = 0
    for _ in range(400):
        sample = [rng.expovariate(1.0) for _ in range(40)]
        q = quantile_with_interval(sample, 50)
        true_median = math.log(2)
        covered += q is not None and q.low is not None and q.high is not None and q.low <= true_median <= q.high
    assert covered / 400 >= 0.93  # nominal 0.95, a little over by construction (discrete ranks)


# --- confirmation and case status ------------------------------------------------------------------


@pytest.mark.parametrize(("base", "head", "status"), [
    ("PPP", "FFF", CaseStatus.REGRESSED), ("F", "P", CaseStatus.FIXED), ("PPP", "PFF", CaseStatus.FLAKY),
    ("PFP", "PPP", CaseStatus.FLAKY), ("PP", "PP", CaseStatus.UNCHANGED), ("F", "F", CaseStatus.UNCHANGED),
])
def test_case_status_needs_every_sample_to_agree(base: str, head: str, status: CaseStatus) -> None:
    [pair] = pairs_of((base, head))
    assert case_status(pair.base, pair.head) is status
    assert status == status.value  # a str: JSON and comparisons see its value


def test_a_flip_or_a_disagreeing_side_is_asked_again() -> None:
    assert needs_confirmation([P], [F]) and needs_confirmation([F], [P])
    assert needs_confirmation([P, P, F], [P, P, P])  # majorities agree, but base disagrees with itself
    assert not needs_confirmation([P, P], [P, P]) and not needs_confirmation([F], [F])


# --- the verdict -----------------------------------------------------------------------------------


def test_four_deterministic_regressions_of_six_are_a_regression() -> None:
    # The old sign test called this p = 0.125, "within noise". Confirmed and no case flaky: no noise.
    result = paired_test(pairs_of(*[("PPP", "FFF")] * 4, *[("P", "P")] * 2))
    assert (result.regressed, result.fixed, result.flaky, result.confirmed) == (4, 0, 0, True)
    assert result.by_flips == "regression" and result.verdict == "regression"
    gate = pass_rate_drop_gate(1.0, 2 / 6, 0.02, result)
    assert not gate.passed and "4 of 6 cases confirmed regressed net of fixes, 66.7 points" in gate.reason


def test_one_deterministic_regression_of_twenty_fails_a_two_point_gate() -> None:
    result = paired_test(pairs_of(("PPP", "FFF"), *[("P", "P")] * 19))
    assert result.verdict == "regression" and not pass_rate_drop_gate(1.0, 0.95, 0.02, result).passed
    assert pass_rate_drop_gate(1.0, 0.95, 0.10, result).passed  # 5 points is within a 10-point gate


def test_a_chance_flip_is_flaky_and_counts_neither_way() -> None:
    result = paired_test(pairs_of(("PPF", "FPP"), *[("P", "P")] * 19))
    assert (result.regressed, result.flaky, result.verdict) == (0, 1, "within noise")
    assert pass_rate_drop_gate(1.0, 0.95, 0.02, result).passed


def test_fixes_net_against_regressions() -> None:
    result = paired_test(pairs_of(*[("PPP", "FFF")] * 3, *[("FFF", "PPP")] * 3, *[("P", "P")] * 10))
    assert result.net_regressed == 0 and result.by_flips == "" and result.verdict == "within noise"
    improved = paired_test(pairs_of(*[("FFF", "PPP")] * 3, *[("P", "P")] * 3))
    assert improved.verdict == "improvement"


def test_in_a_noisy_suite_confirmed_flips_must_beat_the_noise_bound() -> None:
    # 30 flaky cases say the model is noisy; 2 confirmed regressions among 20 candidates is what noise gives.
    noisy = [("FPF", "FPF")] * 30
    weak = paired_test(pairs_of(*[("PPP", "FFF")] * 2, *[("PFF", "FPF")] * 18, *noisy))
    assert weak.candidates_regressed == 20 and weak.p_flips_regressed > 0.025
    assert weak.by_flips == "" and weak.verdict == "within noise"
    strong = paired_test(pairs_of(*[("PPP", "FFF")] * 10, *[("PFF", "FPF")] * 10, *noisy))
    assert strong.p_flips_regressed < 1e-6 and strong.by_flips == "regression"


def test_the_flip_bound_is_four_to_the_minus_extra_samples() -> None:
    # One candidate confirmed with two extra samples a side: at most 1/16 under no change, whatever p is.
    result = paired_test(pairs_of(("PPP", "FFF"), ("PFP", "PFP")))
    assert result.p_flips_regressed == pytest.approx(1 / 16)
    # With repeat 3 and confirm 2 the candidate's extra samples are the last two.
    wider = paired_test([CasePair((P,) * 5, (F,) * 5, 3, 3), CasePair((P, F), (P, F), 1, 1)])
    assert wider.p_flips_regressed == pytest.approx(1 / 16)


def test_unconfirmed_flips_say_so() -> None:
    result = paired_test(pairs_of(("P", "F"), ("P", "P")))
    assert not result.confirmed and "unconfirmed" in result.evidence()


def test_a_uniform_drop_is_caught_by_the_paired_test_over_all_samples() -> None:
    # No case confirms (all flaky), but head passes far fewer samples everywhere.
    result = paired_test(pairs_of(*[("PPPPP", "PFFFP")] * 20, *[("PPPPP", "PPPPP")] * 20))
    assert result.regressed == 0 and result.by_samples == "regression" and result.drop == pytest.approx(0.3)
    gate = pass_rate_drop_gate(1.0, 1.0, 0.02, result)
    assert not gate.passed and "over all samples" in gate.reason


def test_no_change_and_empty() -> None:
    assert paired_test(pairs_of(("P", "P"), ("F", "F"))).verdict == "no change"
    assert paired_test([]).verdict == "no change"
    with pytest.raises(ValueError):
        paired_test(pairs_of(("P", "F")), alpha=1.5)
    with pytest.raises(ValueError):
        paired_test([CasePair((), (P,))])


# --- the sign-flip test ----------------------------------------------------------------------------


def test_sign_flip_exact_values_match_enumeration() -> None:
    rng = random.Random(3)
    for _ in range(30):
        diffs = [Fraction(rng.randint(-3, 3), 3) for _ in range(rng.randint(1, 12))]
        nonzero = [d for d in diffs if d]
        expected = brute_sign_flip(nonzero) if nonzero else (1.0, 1.0)
        assert sign_flip_p_values(diffs) == pytest.approx(expected)


def test_sign_flip_normal_approximation_beyond_thirty_cases() -> None:
    diffs = [Fraction(1)] * 25 + [Fraction(-1)] * 15  # 40 nonzero: T = 10, sd = sqrt(40)
    drop, rise = sign_flip_p_values(diffs)
    assert drop == pytest.approx(1 - NormalDist().cdf((10 - 1) / math.sqrt(40)), rel=1e-9)
    exact = sum(math.comb(40, k) for k in range(25, 41)) / 2**40  # T >= 10 means 25 or more +1s
    assert drop == pytest.approx(exact, rel=0.1)
    assert rise > 0.9


def test_ten_thousand_cases_in_well_under_a_second_of_work() -> None:
    rng = random.Random(7)
    pairs = [CasePair(tuple(rng.random() < 0.8 for _ in range(3)), tuple(rng.random() < 0.8 for _ in range(3)), 3, 3)
             for _ in range(10_000)]
    result = paired_test(pairs)
    assert result.regressed + result.fixed + result.flaky + result.unchanged == 10_000
    assert 0.0 <= result.p_value <= 1.0


# --- latency ---------------------------------------------------------------------------------------


def test_mann_whitney_matches_a_textbook_value() -> None:
    # U = 1 for these (one pair, 5 > 4.5; no ties); the normal approximation with continuity correction.
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [4.5, 6.0, 7.0, 8.0, 9.0]
    z = (abs(1 - 12.5) - 0.5) / math.sqrt(5 * 5 * 11 / 12)
    assert mann_whitney_p(x, y) == pytest.approx(2 * (1 - NormalDist().cdf(z)))
    assert mann_whitney_p([5.0] * 8, [5.0] * 8) == 1.0


def test_identical_latencies_are_no_change() -> None:
    same = [120.0, 130.0, 150.0, 170.0, 200.0, 240.0]
    change = latency_change(same, same)
    assert change.p_value == 1.0 and not change.changed and change.shift_ms == 0.0


def test_a_real_shift_is_measured_with_its_interval() -> None:
    rng = random.Random(1)
    base = [200 + rng.uniform(0, 100) for _ in range(60)]
    head = [v + 150 for v in base]
    rng.shuffle(head)
    change = latency_change(base, head)
    assert change.changed and change.p_value is not None and change.p_value < 1e-6
    assert change.shift_low_ms <= 150 <= change.shift_high_ms and change.shift_ms == pytest.approx(150, abs=10)


def test_too_few_fresh_latencies_call_no_change() -> None:
    change = latency_change([100.0, 120.0], [900.0, 950.0, 990.0, 1000.0, 1100.0])
    assert change.p_value is None and not change.changed


def test_hodges_lehmann_thins_big_samples_and_stays_close() -> None:
    rng = random.Random(2)
    base = [rng.gauss(300, 30) for _ in range(3_000)]
    head = [rng.gauss(330, 30) for _ in range(3_000)]
    shift, low, high = hodges_lehmann(base, head)
    assert low < shift < high and shift == pytest.approx(30, abs=4)


# --- flakiness --------------------------------------------------------------------------------


def test_flaky_means_the_samples_disagree() -> None:
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

REGRESSION = paired_test(pairs_of(*[("PPP", "FFF")] * 10, *[("P", "P")] * 90))
NOISE = paired_test(pairs_of(*[("PFP", "FPF")] * 3, *[("P", "P")] * 97))


def test_drop_beyond_noise_and_limit_fails() -> None:
    gate = pass_rate_drop_gate(1.0, 0.9, 0.02, REGRESSION)
    assert gate == GateResult(False, "pass rate 100.0% -> 90.0%: 10 of 100 cases confirmed regressed net of fixes, "
                                     "10.0 points, more than the allowed drop of 2.0 points (10 regressed, 0 fixed, "
                                     "no case flaky, so its flips are not noise)")


def test_drop_within_noise_passes_and_says_so() -> None:
    gate = pass_rate_drop_gate(1.0, 0.97, 0.02, NOISE)
    assert gate.passed
    assert "within noise, not a regression beyond the allowed drop" in gate.reason
    assert "0 regressed, 0 fixed, 3 flaky" in gate.reason


def test_drop_within_the_limit_passes_even_when_beyond_noise() -> None:
    gate = pass_rate_drop_gate(1.0, 0.9, 0.15, REGRESSION)
    assert gate.passed and "a regression beyond noise, but within the allowed drop of 15.0 points" in gate.reason


def test_drop_exactly_at_the_limit_passes_despite_float_error() -> None:
    assert 0.9 - 0.88 > 0.02  # the binary rounding the gate must tolerate
    two_of_a_hundred = paired_test(pairs_of(*[("PPP", "FFF")] * 2, *[("P", "P")] * 98))
    assert pass_rate_drop_gate(0.9, 0.88, 0.02, two_of_a_hundred).passed


def test_a_rise_passes_and_no_base_passes() -> None:
    assert pass_rate_drop_gate(0.8, 0.9, 0.0, paired_test([])).passed
    gate = pass_rate_drop_gate(None, 0.9, 0.02, paired_test([]))
    assert gate == GateResult(True, "pass rate 90.0%; no base run to compare with")


def test_min_pass_rate() -> None:
    assert min_pass_rate(0.95, 0.9) == GateResult(True, "pass rate 95.0% meets the minimum 90.0%")
    assert min_pass_rate(0.9, 0.9).passed
    assert min_pass_rate(0.85, 0.9) == GateResult(False, "pass rate 85.0% is below the minimum 90.0%")


def test_a_gate_that_fails_on_the_base_too_says_so() -> None:
    gate = min_pass_rate(0.85, 0.9, base_rate=0.8, base_label="main")
    assert gate == GateResult(False, "pass rate 85.0% is below the minimum 90.0%; also fails on main (80.0%)",
                              preexisting=True)
    assert not min_pass_rate(0.85, 0.9, base_rate=0.95).preexisting
    latency = max_p95_latency(4500.0, 4000, base_p95_ms=4100.0, base_label="main")
    assert latency.preexisting and latency.reason.endswith("also fails on main (4,100 ms)")


def test_max_cost_increase() -> None:
    assert max_cost_increase(0.001, 0.0012, 25) == GateResult(
        True, "measured cost per call $0.001000 -> $0.001200 (+20.0%), within the allowed 25%"
    )
    assert max_cost_increase(0.001, 0.00125, 25).passed  # exactly at the limit
    assert max_cost_increase(0.001, 0.0015, 25, kind="estimated") == GateResult(
        False, "estimated cost per call $0.001000 -> $0.001500 (+50.0%) exceeds the allowed 25%"
    )
    assert max_cost_increase(2.0, 1.5, 0) == GateResult(True, "measured cost per call $2.00 -> $1.50, no increase")
    assert max_cost_increase(0.0, 0.0, 25).passed
    assert max_cost_increase(0.0, 0.001, 25) == GateResult(
        False, "measured cost per call $0.00 -> $0.001000: any increase from zero exceeds the allowed 25%"
    )


def test_unknown_cost_passes_with_a_reason() -> None:
    assert max_cost_increase(None, 0.001, 25) == GateResult(
        True, "measured cost unknown at base (no price for the model); gate not applied"
    )
    assert max_cost_increase(0.001, None, 25).reason.startswith("measured cost unknown at head")
    assert max_cost_increase(None, None, 25).reason.startswith("measured cost unknown at base and head")


def test_max_p95_latency() -> None:
    assert max_p95_latency(3200.0, 4000) == GateResult(True, "p95 latency 3,200 ms is within the limit of 4,000 ms")
    assert max_p95_latency(4000.0, 4000).passed
    assert max_p95_latency(4210.0, 4000) == GateResult(False, "p95 latency 4,210 ms exceeds the limit of 4,000 ms")
    assert max_p95_latency(None, 4000) == GateResult(
        True, "no fresh latency measured (cached answers keep none); gate not applied")


# -- judged retrieval figures ---------------------------------------------------------------------------


def test_a_judged_fall_on_eight_cases_is_a_regression_beyond_noise() -> None:
    change = judged_change([(0.9, 0.4)] * 8 + [(0.7, 0.7)] * 4)
    assert (change.paired, change.moved, change.verdict) == (12, 8, "regression")
    assert change.p_drop == pytest.approx(1 / 256) and change.drop == pytest.approx(0.5 * 8 / 12)


def test_a_judged_fall_on_five_cases_cannot_reach_the_level() -> None:
    """The documented limit: 2^-5 = 0.031 > alpha / 2."""
    change = judged_change([(1.0, 0.0)] * 5)
    assert change.verdict == "within noise" and change.p_drop == pytest.approx(1 / 32)


def test_judged_moves_both_ways_are_within_noise_and_none_is_no_change() -> None:
    assert judged_change([(0.8, 0.3), (0.3, 0.8), (0.5, 0.4), (0.4, 0.5)]).verdict == "within noise"
    same = judged_change([(0.5, 0.5), (1.0, 1.0)])
    assert (same.verdict, same.moved, same.p_value) == ("no change", 0, 1.0)
    assert judged_change([]).verdict == "no change"


def test_a_judged_rise_is_an_improvement_and_differences_under_a_hundredth_do_not_move() -> None:
    assert judged_change([(0.2, 0.9)] * 7).verdict == "improvement"
    assert judged_change([(0.5, 0.503)] * 40).verdict == "no change"


def test_the_judged_drop_gate_fails_only_on_a_fall_beyond_noise_larger_than_allowed() -> None:
    beyond = judged_drop_gate("context recall", judged_change([(1.0, 0.5)] * 8), 0.1)
    assert not beyond.passed and beyond.reason == (
        "context recall 1.00 -> 0.50 over 8 case(s) judged on both sides: falls 0.50 beyond noise (8 moved, "
        "paired sign-flip test p = 0.0039), more than the allowed 0.10")
    assert judged_drop_gate("context recall", judged_change([(1.0, 0.5)] * 8), 0.5).passed
    noisy = judged_drop_gate("context recall", judged_change([(1.0, 0.0)] * 3), 0.0)
    assert noisy.passed and "within noise, not a fall beyond noise" in noisy.reason
    assert judged_drop_gate("context recall", None, 0.0).reason == \
        "context recall not judged on both sides; gate not applied"


def test_the_judged_floor_names_a_base_that_fails_too_and_passes_when_nothing_was_judged() -> None:
    assert min_judged("context precision", 0.8, 0.8).passed
    below = min_judged("context precision", 0.5, 0.8, base=0.6, base_label="main")
    assert not below.passed and below.preexisting and below.reason == \
        "context precision 0.50 is below the minimum 0.80; also fails on main (0.60)"
    assert not min_judged("context precision", 0.5, 0.8, base=0.9).preexisting
    assert min_judged("context precision", None, 0.8).passed
