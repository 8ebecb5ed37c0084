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
