"""Run eval suites at one ref: render every case, call the model (through the runner), assess the answers.

A suite run holds, per case, the outcome of every repeat: whether it passed,
its weighted score, the answer, and the reasons of the assertions that failed.
Comparing two runs (base and head) is compare.py's job.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from promptops.config import Workspace
from promptops.evals import assertions
from promptops.evals.cache import ResultCache, call_key
from promptops.evals.runner import Call, CallOutcome, RunSettings, run_calls
from promptops.specs import EvalCase, EvalSuiteSpec, PromptSpec
from promptops.templating import RenderLimits, TemplateError, render_messages

# A judge: (assertion, answer, case, prompt) -> (outcome, judge calls, judge cost or None)
Judge = Callable[[dict[str, Any], assertions.Answer, EvalCase, PromptSpec], Awaitable[tuple[assertions.Outcome, int, float | None]]]


@dataclass(frozen=True)
class Attempt:
    """One repeat of one case."""

    passed: bool
    score: float
    output: str | None
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    failures: tuple[str, ...]  # reasons of the assertions that failed, or the error that stopped the call
    cached: bool = False


@dataclass(frozen=True)
class CaseRun:
    case_id: str
    vars: dict[str, Any]
    expected: Any
    attempts: tuple[Attempt, ...]

    @property
    def passes(self) -> list[bool]:
        return [attempt.passed for attempt in self.attempts]


@dataclass
class SuiteRun:
    suite: str
    prompt_id: str
    prompt_version: str
    model: str
    cases: dict[str, CaseRun] = field(default_factory=dict)
    judge_calls: int = 0
    judge_cost_usd: float | None = 0.0
    problems: list[str] = field(default_factory=list)  # what stopped the suite or some of its cases


def in_shard(suite: EvalSuiteSpec, case: EvalCase, shard: tuple[int, int] | None) -> bool:
    """Whether ``case`` belongs to shard I of N: by a hash of suite and case id, the same at base and head."""
    if shard is None:
        return True
    index, count = shard
    digest = hashlib.sha256(f"{suite.name}\0{case.id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count == index - 1


def plan(suite: EvalSuiteSpec, prompt: PromptSpec, repeat: int, limits: RenderLimits,
         shard: tuple[int, int] | None = None) -> tuple[list[Call], dict[str, str]]:
    """The calls a suite needs (one per case and repeat), and the cases that cannot be rendered, with why."""
    calls, unrenderable = [], {}
    params = dict(prompt.params)
    for case in suite.cases:
        if not in_shard(suite, case, shard):
            continue
        try:
            messages = render_messages(prompt, case.vars, limits)
        except TemplateError as exc:
            unrenderable[case.id] = f"does not render: {getattr(exc, 'message', None) or exc}"
            continue
        for index in range(repeat):
            key = call_key(prompt.model, messages, params, index)
            calls.append(Call(key, prompt.id, prompt.version, case.id, index, prompt.model, messages, params))
    return calls, unrenderable


async def run_suite(
    suite: EvalSuiteSpec,
    workspace: Workspace,
    cache: ResultCache,
    settings: RunSettings,
    repeat: int | None = None,
    judge: Judge | None = None,
    on_outcome: Callable[[CallOutcome], None] = lambda outcome: None,
    shard: tuple[int, int] | None = None,
) -> SuiteRun:
    prompt = workspace.prompts.get(suite.prompt)
    if prompt is None:
        run = SuiteRun(suite.name, suite.prompt, "", "")
        run.problems.append(f"no prompt '{suite.prompt}' at this ref")
        return run
    limits = RenderLimits.from_config(workspace.config.section("lint").get("render_limits") or {})
    times = repeat or suite.repeat or int(workspace.config.section("eval").get("repeat", 1))
    calls, unrenderable = plan(suite, prompt, times, limits, shard)
    outcomes = await run_calls(calls, cache, settings, on_outcome)
    by_case: dict[str, list[CallOutcome]] = {}
    for outcome in outcomes:
        by_case.setdefault(outcome.call.case_id, []).append(outcome)
    run = SuiteRun(suite.name, prompt.id, prompt.version, prompt.model)
    for case in suite.cases:
        if not in_shard(suite, case, shard):
            continue
        if case.id in unrenderable:
            failed = Attempt(False, 0.0, None, None, None, None, None, (unrenderable[case.id],))
            run.cases[case.id] = CaseRun(case.id, case.vars, case.expected, (failed,))
            continue
        attempts = [await _assess(case, suite, prompt, outcome, judge, run) for outcome in by_case.get(case.id, [])]
        run.cases[case.id] = CaseRun(case.id, case.vars, case.expected, tuple(attempts))
    return run


async def _assess(case: EvalCase, suite: EvalSuiteSpec, prompt: PromptSpec, outcome: CallOutcome,
                  judge: Judge | None, run: SuiteRun) -> Attempt:
    if outcome.error is not None or outcome.output is None:
        return Attempt(False, 0.0, None, outcome.latency_ms, None, None, None, (outcome.error or "no answer",))
    answer = assertions.Answer(outcome.output, outcome.latency_ms, outcome.cost_usd)
    scored = []
    for assertion in (*suite.default_assert, *case.asserts):
        if assertion.get("type") in assertions.MODEL_JUDGED:
            result = await _judged(assertion, answer, case, prompt, judge, run)
        else:
            result = assertions.evaluate(assertion, answer, case.vars, case.expected)
        scored.append((assertion, result))
    threshold = case.threshold if case.threshold is not None else suite.threshold
    passed, score = assertions.score_case(scored, threshold)
    failures = tuple(f"{a.get('type')}: {o.reason}" for a, o in scored if not o.passed and assertions.weight(a) > 0)
    return Attempt(passed, score, outcome.output, outcome.latency_ms, outcome.input_tokens, outcome.output_tokens,
                   outcome.cost_usd, failures, outcome.cached)


async def _judged(assertion: dict[str, Any], answer: assertions.Answer, case: EvalCase, prompt: PromptSpec,
                  judge: Judge | None, run: SuiteRun) -> assertions.Outcome:
    if judge is None:
        return assertions.Outcome(False, 0.0, f"{assertion['type']} needs a judge model, and none is configured")
    outcome, calls, cost = await judge(assertion, answer, case, prompt)
    run.judge_calls += calls
    run.judge_cost_usd = None if cost is None or run.judge_cost_usd is None else run.judge_cost_usd + cost
    return outcome
