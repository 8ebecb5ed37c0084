"""Run eval suites at one ref: render every case, call the model (through the runner), assess the answers.

A suite run holds, per case, the outcome of every repeat: whether it passed,
its weighted score, the answer, and the reasons of the assertions that failed.
Comparing two runs (base and head) is compare.py's job.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator

from promptops.config import Workspace
from promptops.evals import assertions
from promptops.evals.cache import ResultCache, call_key
from promptops.evals.runner import Call, CallEngine, CallOutcome, RunSettings, cached_outcome
from promptops.specs import EvalCase, EvalSuiteSpec, PromptSpec
from promptops.templating import RenderLimits, TemplateError, render_messages

MAX_OUTPUT_CHARS = 2_000  # of an answer, kept for reports; the cache keeps answers whole
_LOOKUP_BATCH = 500  # calls looked up in the cache at once while planning

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


@dataclass
class Side:
    """One suite at one ref, planned: its run (filled as answers arrive) and the calls still to make.

    Each case is rendered once (not once per repeat). Answers found in the cache wait in
    ``cached``; the others in ``pending``, in case order. A case is assessed as soon as its last
    repeat's answer arrives, and only its Attempts are kept (answers clipped for reports).
    """

    suite: EvalSuiteSpec
    prompt: PromptSpec | None  # None: no such prompt at this ref (run.problems says so)
    run: SuiteRun
    repeat: int
    cases: dict[str, EvalCase] = field(default_factory=dict)  # the cases in play, in order
    cached: list[CallOutcome] = field(default_factory=list)
    pending: deque[Call] = field(default_factory=deque)
    answers: dict[str, list[CallOutcome | None]] = field(default_factory=dict)  # cases not yet complete
    assessed: dict[str, CaseRun] = field(default_factory=dict)

    async def execute(self, engine: CallEngine, judge: Judge | None,
                      on_outcome: Callable[[CallOutcome], None] = lambda outcome: None) -> SuiteRun:
        """Run the pending calls through ``engine``, assess every case, and return the suite run."""
        assessing: set[asyncio.Task[None]] = set()

        def arrived(outcome: CallOutcome) -> None:
            on_outcome(outcome)
            answers = self.answers[outcome.call.case_id]
            answers[outcome.call.repeat] = outcome
            if all(answer is not None for answer in answers):
                del self.answers[outcome.call.case_id]
                task = asyncio.create_task(self._assess_case(outcome.call.case_id, answers, judge))  # type: ignore[arg-type]
                assessing.add(task)
                task.add_done_callback(_forget_if_fine(assessing))

        cached, self.cached = self.cached, []
        for outcome in cached:
            arrived(outcome)
        await engine.stream(((None, call) for call in _drain(self.pending)), lambda _, outcome: arrived(outcome))
        await asyncio.gather(*assessing)
        self.run.cases = {case_id: self.assessed[case_id] for case_id in self.cases if case_id in self.assessed}
        return self.run

    async def _assess_case(self, case_id: str, answers: list[CallOutcome], judge: Judge | None) -> None:
        case, prompt = self.cases[case_id], self.prompt
        assert prompt is not None  # a side without its prompt has no calls
        attempts = [await _assess(case, self.suite, prompt, answer, judge, self.run) for answer in answers]
        self.assessed[case_id] = CaseRun(case.id, case.vars, case.expected, tuple(attempts))


def _drain(calls: deque[Call]) -> Iterator[Call]:
    """The calls, each dropped from the queue as it is handed out (memory stays flat)."""
    while calls:
        yield calls.popleft()


def _forget_if_fine(tasks: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    """Drop a finished task from ``tasks``, unless it failed: gather raises its error at the end."""
    def done(task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            tasks.discard(task)
    return done


def plan_side(suite: EvalSuiteSpec, workspace: Workspace, cache: ResultCache, repeat: int | None = None,
              shard: tuple[int, int] | None = None) -> Side:
    """Render the suite's cases at this ref, address every call, and look each up in the cache."""
    prompt = workspace.prompts.get(suite.prompt)
    if prompt is None:
        side = Side(suite, None, SuiteRun(suite.name, suite.prompt, "", ""), 0)
        side.run.problems.append(f"no prompt '{suite.prompt}' at this ref")
        return side
    limits = RenderLimits.from_config(workspace.config.section("lint").get("render_limits") or {})
    times = repeat or suite.repeat or int(workspace.config.section("eval").get("repeat", 1))
    side = Side(suite, prompt, SuiteRun(suite.name, prompt.id, prompt.version, prompt.model), times)
    params = dict(prompt.params)
    batch: list[Call] = []
    for case in suite.cases:
        if not in_shard(suite, case, shard):
            continue
        side.cases[case.id] = case
        try:
            messages = render_messages(prompt, case.vars, limits)
        except TemplateError as exc:
            reason = f"does not render: {getattr(exc, 'message', None) or exc}"
            failed = Attempt(False, 0.0, None, None, None, None, None, (reason,))
            side.assessed[case.id] = CaseRun(case.id, case.vars, case.expected, (failed,))
            continue
        side.answers[case.id] = [None] * times
        batch.extend(Call(call_key(prompt.model, messages, params, index), prompt.id, prompt.version, case.id, index,
                          prompt.model, messages, params) for index in range(times))
        if len(batch) >= _LOOKUP_BATCH:
            _look_up(side, cache, batch)
            batch = []
    _look_up(side, cache, batch)
    return side


def _look_up(side: Side, cache: ResultCache, calls: list[Call]) -> None:
    hits = cache.get_many([call.key for call in calls])
    for call in calls:
        hit = hits.get(call.key)
        if hit is None:
            side.pending.append(call)
        else:
            side.cached.append(cached_outcome(call, hit))


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
    """One suite at one ref, through ``settings.engine`` (or an engine of its own in this process)."""
    side = plan_side(suite, workspace, cache, repeat, shard)
    if side.prompt is None:
        return side.run
    if settings.engine is not None:
        return await _checked(side, settings.engine, judge, on_outcome)
    async with CallEngine(cache, settings) as engine:
        return await _checked(side, engine, judge, on_outcome)


async def _checked(side: Side, engine: CallEngine, judge: Judge | None,
                   on_outcome: Callable[[CallOutcome], None]) -> SuiteRun:
    await engine.check_credentials({call.model for call in side.pending})
    return await side.execute(engine, judge, on_outcome)


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
    return Attempt(passed, score, _clipped(outcome.output), outcome.latency_ms, outcome.input_tokens,
                   outcome.output_tokens, outcome.cost_usd, failures, outcome.cached)


def _clipped(output: str) -> str:
    """What a report shows of an answer; the cache keeps it whole."""
    return output if len(output) <= MAX_OUTPUT_CHARS else output[:MAX_OUTPUT_CHARS] + "…"


async def _judged(assertion: dict[str, Any], answer: assertions.Answer, case: EvalCase, prompt: PromptSpec,
                  judge: Judge | None, run: SuiteRun) -> assertions.Outcome:
    if judge is None:
        return assertions.Outcome(False, 0.0, f"{assertion['type']} needs a judge model, and none is configured")
    outcome, calls, cost = await judge(assertion, answer, case, prompt)
    run.judge_calls += calls
    run.judge_cost_usd = None if cost is None or run.judge_cost_usd is None else run.judge_cost_usd + cost
    return outcome
