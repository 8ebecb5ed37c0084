"""Trials of the PR verdict against a noisy stub model, through the whole eval pipeline and litellm.

Shared by tests/evals/test_verdict_noise.py (a few trials, every test run) and bench/verdict_bench.py (ten
trials a scenario, printed). A trial is one `promptops eval` of a 100-case suite at base and head with
a fresh cache and a new seed for the model's noise: the base prompt says "Answer with the city.",
the head "Answer with the city only." (a trivial wording change: every request differs, so every
answer is a fresh draw), and the suite's gate is ``max_pass_rate_drop: 0.02``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

from promptops.config import load_workspace
from promptops.evals.execute import EvalOptions, run_evaluation
from promptops.testing import NoisyResponder, StubServer
from promptops.testing.rules import last_text, system_text

CASES = 100
PROMPT = """\
id: geo.capital
model: {name: openai/gpt-4o-mini, params: {temperature: 0.7, max_tokens: 20}}
inputs: {type: object, required: [country], properties: {country: {type: string}}}
messages:
  - {role: system, content: "SYSTEM"}
  - {role: user, content: "What is the capital of {{ country }}?"}
"""
BASE_SYSTEM, HEAD_SYSTEM = "Answer with the city.", "Answer with the city only."


@dataclass(frozen=True)
class Scenario:
    name: str
    base_error: float  # the chance an answer is wrong at base
    head_error: float  # ... at head
    broken: int = 0  # cases the head always gets wrong (a real, deterministic regression)
    repeat: int = 1

    @property
    def real(self) -> bool:
        """Whether the head is really worse (a failed check is a catch), or not (a failed check is a false alarm)."""
        return self.broken > 0 or self.head_error > self.base_error

    def error_rate(self, request: dict) -> float:
        messages = request.get("messages") or []
        if "only" not in system_text(messages):
            return self.base_error
        country = last_text(messages, "user").rsplit(" ", 1)[-1].rstrip("?")
        return 1.0 if int(country.removeprefix("Land")) < self.broken else self.head_error


UNCHANGED = [Scenario("unchanged prompt, 20% noise, repeat 1", 0.2, 0.2),
             Scenario("unchanged prompt, 20% noise, repeat 3", 0.2, 0.2, repeat=3)]
REAL_DROPS = [Scenario("15 cases broken under 20% noise, repeat 1", 0.2, 0.2, broken=15),
              Scenario("15 cases broken under 20% noise, repeat 3", 0.2, 0.2, broken=15, repeat=3),
              Scenario("error rate 20% -> 35%, repeat 1", 0.2, 0.35),
              Scenario("error rate 20% -> 35%, repeat 3", 0.2, 0.35, repeat=3)]


@dataclass(frozen=True)
class Trial:
    failed: bool  # the gate failed
    regressed: int
    flaky: int
    calls: int  # model calls the stub answered
    confirmation_calls: int
    seconds: float


def make_projects(root: Path) -> tuple[Path, Path]:
    """The base and the head as two project folders (no git: the trial compares workspaces)."""
    rows = "".join(json.dumps({"id": f"land{n}", "vars": {"country": f"Land{n}"}, "expected": f"City of Land{n}"})
                   + "\n" for n in range(CASES))
    folders = []
    for name, system in (("base", BASE_SYSTEM), ("head", HEAD_SYSTEM)):
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "promptops.yaml").write_text("eval: {concurrency: 16, retries: 1}\n")
        (folder / "geo.prompt.yaml").write_text(PROMPT.replace("SYSTEM", system))
        (folder / "cases.jsonl").write_text(rows)
        (folder / "geo.eval.yaml").write_text("prompt: geo.capital\ndataset: cases.jsonl\n"
                                              "gates: {max_pass_rate_drop: 0.02}\n"
                                              "default_assert: [{type: contains, value: '{{ expected }}'}]\n")
        folders.append(folder)
    return folders[0], folders[1]


def city(request: dict) -> str:
    country = last_text(request.get("messages") or [], "user").rsplit(" ", 1)[-1].rstrip("?")
    return f"City of {country}"


def run_trial(scenario: Scenario, seed: int, projects: tuple[Path, Path], stub: StubServer, cache: Path,
              confirm: int | None = None) -> Trial:
    """One eval at base and head; ``confirm`` overrides eval.confirm (the default, 2)."""
    stub.reset(responder=NoisyResponder(city, wrong="No idea.", error_rate=scenario.error_rate, seed=seed))
    base, head = (load_workspace(folder) for folder in projects)
    options = EvalOptions(run_all=True, repeat=scenario.repeat, confirm=confirm, api_base=stub.base_url, cache=cache,
                          workers=0)
    started = time.perf_counter()
    [comparison], _ = asyncio.run(run_evaluation(base, head, options))
    seconds = time.perf_counter() - started
    assert comparison.paired is not None
    return Trial(not comparison.passed, comparison.paired.regressed, comparison.paired.flaky, stub.calls,
                 comparison.head.confirmation_calls + (comparison.base.confirmation_calls if comparison.base else 0),
                 seconds)


# -- trials in worker processes: they are independent, and litellm's CPU per call is what they cost --------

_OWN_STUB: StubServer | None = None


def start_worker() -> None:
    """In a worker process: import litellm and start this process's own stub (a trial's noise is its alone)."""
    from promptops.evals.runner import import_litellm

    global _OWN_STUB
    import_litellm()
    if _OWN_STUB is None:
        _OWN_STUB = StubServer().start()  # a daemon thread: it ends with the worker process


def run_trial_in_worker(scenario: Scenario, seed: int, projects: tuple[Path, Path], cache: Path) -> Trial:
    start_worker()
    assert _OWN_STUB is not None
    return run_trial(scenario, seed, projects, _OWN_STUB, cache)
