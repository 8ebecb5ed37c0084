"""The verdict's false alarms and misses, measured over many seeded trials of the whole protocol.

Each trial draws every sample of every case from a model with a pass probability per case and
side, flags and confirms cases exactly as an eval run does (``stats.needs_confirmation``, then
``confirm`` more samples a side), and asks ``pass_rate_drop_gate`` with a 2-point limit. The same
scenarios run end to end through litellm and the stub server in tests/evals/test_verdict_noise.py and
bench/verdict_bench.py. The figures the module docstring of promptops/evals/stats.py quotes come
from here; the assertions hold them with a margin for the trial count.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from promptops.evals import stats
from promptops.evals.stats import CasePair
from promptops.model.evals import CaseRetrieval

MAX_DROP = 0.02
TRIALS = 400


@dataclass(frozen=True)
class Scenario:
    name: str
    base: list[float]  # per case: the chance a sample passes
    head: list[float]
    repeat: int = 1
    confirm: int = stats.DEFAULT_CONFIRM


def fails(scenario: Scenario, rng: random.Random) -> bool:
    pairs = []
    for p_base, p_head in zip(scenario.base, scenario.head):
        base = [rng.random() < p_base for _ in range(scenario.repeat)]
        head = [rng.random() < p_head for _ in range(scenario.repeat)]
        if stats.needs_confirmation(base, head):
            base += [rng.random() < p_base for _ in range(scenario.confirm)]
            head += [rng.random() < p_head for _ in range(scenario.confirm)]
        pairs.append(CasePair(tuple(base), tuple(head), scenario.repeat, scenario.repeat))
    result = stats.paired_test(pairs)
    rates = [sum(p.base) / len(p.base) for p in pairs], [sum(p.head) / len(p.head) for p in pairs]
    return not stats.pass_rate_drop_gate(sum(rates[0]) / len(pairs), sum(rates[1]) / len(pairs), MAX_DROP,
                                         result).passed


def failure_rate(scenario: Scenario, trials: int = TRIALS, seed: int = 20261202) -> float:
    rng = random.Random(seed)
    return sum(fails(scenario, rng) for _ in range(trials)) / trials


def same(p: float, n: int) -> list[float]:
    return [p] * n


UNCHANGED = [
    Scenario(f"unchanged, {round((1 - p) * 100)}% noise, {n} cases, repeat {r}", same(p, n), same(p, n), r)
    for p in (0.8, 0.5) for n in (20, 100) for r in (1, 3)
] + [
    Scenario("unchanged, 30 coin-flip cases among 70 steady ones", [0.5] * 30 + [0.97] * 70, [0.5] * 30 + [0.97] * 70),
    Scenario("unchanged, 200 cases, 20% noise", same(0.8, 200), same(0.8, 200)),
]


@pytest.mark.parametrize("scenario", UNCHANGED, ids=lambda s: s.name)
def test_an_unchanged_prompt_on_a_noisy_model_rarely_fails(scenario: Scenario) -> None:
    rate = failure_rate(scenario)
    assert rate <= 0.05, f"{scenario.name}: {rate:.1%} false alarms"


REAL = [
    Scenario("4 of 6 cases break, deterministic model", [1.0] * 6, [1.0] * 2 + [0.0] * 4),
    Scenario("1 of 20 cases breaks, deterministic model", [1.0] * 20, [1.0] * 19 + [0.0]),
    Scenario("15 of 100 cases break under 20% noise, repeat 1", same(0.8, 100), [0.8] * 85 + [0.0] * 15),
    Scenario("15 of 100 cases break under 20% noise, repeat 3", same(0.8, 100), [0.8] * 85 + [0.0] * 15, 3),
    Scenario("error rate rises from 20% to 35%, repeat 3", same(0.8, 100), same(0.65, 100), 3),
]


@pytest.mark.parametrize("scenario", REAL, ids=lambda s: s.name)
def test_a_real_drop_is_caught(scenario: Scenario) -> None:
    rate = failure_rate(scenario)
    assert rate >= 0.95, f"{scenario.name}: caught {rate:.1%}"


def test_a_uniform_rise_in_noise_at_repeat_one_is_caught_most_of_the_time() -> None:
    """The documented limit: one sample a side carries little information about a uniform shift."""
    rate = failure_rate(Scenario("error rate rises from 20% to 35%, repeat 1", same(0.8, 100), same(0.65, 100)))
    assert rate >= 0.78, f"caught {rate:.1%}"


def test_one_noisy_case_among_steady_ones_fails_about_once_in_sixty_four() -> None:
    """The other documented limit: a suite with no flaky case takes a confirmed flip as it is."""
    rate = failure_rate(Scenario("one coin-flip case in 20", [1.0] * 19 + [0.5], [1.0] * 19 + [0.5]), trials=2_000)
    assert rate <= 0.03, f"{rate:.1%}"


def test_without_confirmation_chance_flips_of_one_sample_count() -> None:
    """confirm: 0 with repeat 1 is the old blind spot turned around: every flip is taken as real."""
    noisy = Scenario("20% noise, confirm 0", same(0.8, 20), same(0.8, 20), confirm=0)
    confirmed = Scenario("20% noise, confirm 2", same(0.8, 20), same(0.8, 20))
    assert failure_rate(noisy) > 3 * failure_rate(confirmed)


def test_latency_change_false_alarms_and_misses() -> None:
    """Identical latency distributions at base and head (jittered stub-like latencies) are called
    changed at most 5% of the time; a 25% slower head is called changed nearly always."""
    rng = random.Random(11)

    def draw(n: int, scale: float) -> list[float]:
        return [scale * (120 + rng.uniform(0, 260)) for _ in range(n)]

    false_alarms = sum(stats.latency_change(draw(17, 1.0), draw(17, 1.0)).changed for _ in range(1_000)) / 1_000
    caught = sum(stats.latency_change(draw(60, 1.0), draw(60, 1.25)).changed for _ in range(300)) / 300
    assert false_alarms <= 0.05 and caught >= 0.9, (false_alarms, caught)


# -- judged retrieval: context precision and recall (stats.judged_change) --------------------------------

PASSAGES = 4  # retrieved a case
REPLACED = (1, 2, 3)  # the ranks a changed case gets other passages at
CLAIMS_AT = (2, 3)  # the expected answer's two claims, held by the passages at these ranks


@dataclass(frozen=True)
class JudgedScenario:
    name: str
    cases: int
    judge_error: float  # the chance a verdict is wrong, drawn once a distinct request (the cache shares it)
    changed: float  # the share of cases whose passages differ at head
    worse: bool = False  # their new passages are irrelevant and hold no claim (else as good as the old ones)


def judged_verdicts(scenario: JudgedScenario, rng: random.Random) -> tuple[str, str]:
    """One trial: per case, the passages of both sides, a judge wrong at ``judge_error`` whose verdict on a request
    both sides make is one (the cache), and the verdicts of ``judged_change`` on precision and on recall."""
    precision, recall = [], []
    for _ in range(scenario.cases):
        relevant = [rng.random() < 0.5 for _ in range(PASSAGES)]
        held = [rng.random() < 0.7 for _ in CLAIMS_AT]  # whether the passage at that rank holds the claim
        changed = rng.random() < scenario.changed
        head_relevant = [False if changed and scenario.worse and rank in REPLACED else relevant[rank]
                         for rank in range(PASSAGES)]
        head_held = [held[i] and not (changed and scenario.worse) for i in range(len(CLAIMS_AT))]

        def judged(truth: list[bool]) -> list[bool]:
            return [verdict != (rng.random() < scenario.judge_error) for verdict in truth]

        base_verdicts = judged(relevant)
        # a passage kept keeps its cached verdict; a new one is judged afresh
        head_verdicts = [judged([head_relevant[rank]])[0] if changed and rank in REPLACED else base_verdicts[rank]
                         for rank in range(PASSAGES)]
        base_claims = judged(held)
        head_claims = judged(head_held) if changed else base_claims  # one verdicts call over all the passages
        precision.append((_precision(base_verdicts), _precision(head_verdicts)))
        recall.append((sum(base_claims) / len(CLAIMS_AT), sum(head_claims) / len(CLAIMS_AT)))
    return stats.judged_change(precision).verdict, stats.judged_change(recall).verdict


def _precision(verdicts: list[bool]) -> float:
    return CaseRetrieval("q", (), (), (), None, relevant=tuple(verdicts)).context_precision or 0.0


def judged_rates(scenario: JudgedScenario, trials: int = TRIALS, seed: int = 20261203) -> tuple[float, float]:
    """How often precision, and recall, were called a regression."""
    rng = random.Random(seed)
    verdicts = [judged_verdicts(scenario, rng) for _ in range(trials)]
    return (sum(p == "regression" for p, _ in verdicts) / trials, sum(r == "regression" for _, r in verdicts) / trials)


JUDGED_UNCHANGED = [JudgedScenario(f"{n} cases, half with other passages as good, judge wrong {e:.0%}", n, e, 0.5)
                    for n in (10, 30, 100) for e in (0.1, 0.3)]


@pytest.mark.parametrize("scenario", JUDGED_UNCHANGED, ids=lambda s: s.name)
def test_judged_context_figures_rarely_call_passages_as_good_a_regression(scenario: JudgedScenario) -> None:
    precision, recall = judged_rates(scenario)
    assert precision <= 0.04 and recall <= 0.04, f"{scenario.name}: {precision:.1%}, {recall:.1%} false alarms"


JUDGED_WORSE = [  # (cases, judge error): the least share of trials in which precision and recall are caught
    ((30, 0.1), 0.6), ((100, 0.1), 0.97), ((100, 0.3), 0.65),
]


@pytest.mark.parametrize(("size", "least"), JUDGED_WORSE, ids=lambda v: str(v))
def test_judged_context_figures_catch_passages_made_worse(size: tuple[int, float], least: float) -> None:
    """30% of the cases get irrelevant passages in place of three of their four, holding none of the expected
    answer's claims. Measured over 400 trials: 30 cases, judge wrong 10%: 69% precision, 69% recall; 100 cases:
    always, wrong 30%: 73% and 79% (figures in stats' docstring, "Judged retrieval")."""
    cases, error = size
    precision, recall = judged_rates(JudgedScenario("worse", cases, error, 0.3, worse=True))
    assert precision >= least and recall >= least, (precision, recall)


def test_judged_context_figures_on_ten_cases_seldom_reach_a_verdict() -> None:
    """The documented limit: too few cases move for the sign-flip test to say much (caught 2% of the time)."""
    precision, recall = judged_rates(JudgedScenario("worse", 10, 0.1, 0.3, worse=True))
    assert precision <= 0.05 and recall <= 0.05, (precision, recall)
