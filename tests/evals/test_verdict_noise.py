"""The verdict against a seeded noisy model, end to end (issue 11, "Verified by"): a 100-case suite, a
model wrong 20% of the time (drawn per call), a trivial wording change, repeat 1 and 3, ten trials with
fresh caches: at most 1 false alarm; 15 broken cases caught in at least 9 of 10 trials.

Every trial goes through the whole pipeline: rendering, the cache, litellm to the stub server on
loopback, confirmation, the verdict. PROMPTOPS_VERDICT_TRIALS sets the trials a scenario (default 10);
bench/verdict_bench.py prints the same figures for these and more scenarios. Trials are independent and
bound by litellm's CPU per call, so they run in one worker process a core, each with its own stub.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from helpers.verdict_trials import (
    REAL_DROPS,
    UNCHANGED,
    Scenario,
    make_projects,
    run_trial,
    run_trial_in_worker,
    start_worker,
)
from promptops.testing import StubServer

TRIALS = int(os.environ.get("PROMPTOPS_VERDICT_TRIALS", "10"))
WORKERS = min(2, os.cpu_count() or 1)


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_projects(tmp_path_factory.mktemp("noise"))


@pytest.fixture(scope="module")
def workers() -> Iterator[ProcessPoolExecutor]:
    """WORKERS processes, started (and litellm imported in each) before the first test: spawned, since this
    process runs threads that a fork would not carry."""
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        for started in [pool.submit(start_worker) for _ in range(WORKERS)]:  # submitted at once: a process each
            started.result()
        yield pool


def failures(scenario: Scenario, workers: ProcessPoolExecutor, projects: tuple[Path, Path],
             tmp_path: Path) -> list[bool]:
    caches = [tmp_path / f"trial{seed}.db" for seed in range(TRIALS)]
    trials = workers.map(partial(run_trial_in_worker, scenario), range(TRIALS), [projects] * TRIALS, caches)
    return [trial.failed for trial in trials]


@pytest.mark.parametrize("scenario", UNCHANGED, ids=lambda s: s.name)
def test_an_unchanged_prompt_on_a_noisy_model_passes(scenario: Scenario, workers: ProcessPoolExecutor,
                                                     projects: tuple[Path, Path], tmp_path: Path) -> None:
    alarms = sum(failures(scenario, workers, projects, tmp_path))
    assert alarms <= max(1, TRIALS // 10), f"{scenario.name}: {alarms} false alarms in {TRIALS} trials"


@pytest.mark.parametrize("scenario", [s for s in REAL_DROPS if s.broken], ids=lambda s: s.name)
def test_a_real_fifteen_point_drop_is_caught(scenario: Scenario, workers: ProcessPoolExecutor,
                                             projects: tuple[Path, Path], tmp_path: Path) -> None:
    caught = sum(failures(scenario, workers, projects, tmp_path))
    assert caught >= TRIALS * 9 // 10, f"{scenario.name}: caught in {caught} of {TRIALS} trials"


def test_confirmation_asks_only_flagged_cases(stub: StubServer, projects: tuple[Path, Path], tmp_path: Path) -> None:
    trial = run_trial(UNCHANGED[0], 99, projects, stub, tmp_path / "once.db")
    # 100 cases x 2 sides, plus 2 more a side for each flagged case, and nothing else.
    assert trial.calls == 200 + trial.confirmation_calls and 0 < trial.confirmation_calls < 200
    again = run_trial(UNCHANGED[0], 99, projects, stub, tmp_path / "once.db")
    assert again.calls == 0 and again.failed == trial.failed  # the cache answers every sample, confirmations too
