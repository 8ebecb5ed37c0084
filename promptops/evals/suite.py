"""Run eval suites at one ref: render every case, call the model (through the runner), assess the answers.

A suite run holds, per case, the outcome of every sample: whether it passed,
its weighted score, the answer, and the reasons of the assertions that failed.
The first ``repeat`` samples of a case are its initial ones; a case that
flipped between base and head, or whose samples disagree, is asked again
(``plan_side`` with later sample indices and only those cases), and those
confirmation samples are appended (``extend``). Comparing two runs (base and
head) is compare.py's job.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeVar

from promptops.config import Workspace
from promptops.evals import assertions
from promptops.evals.runner import CallEngine, cached_outcome
from promptops.evals.stats import DEFAULT_CONFIRM
from promptops.model.evals import Attempt, Call, CallOutcome, CaseRun, Failure, RetrievalRun
from promptops.resultcache import ResultCache, call_key
from promptops.specs import EvalCase, EvalSuiteSpec, PromptSpec
from promptops.templating import RenderLimits, TemplateError, render_messages

MAX_OUTPUT_CHARS = 2_000  # of an answer, kept for reports; the cache keeps answers whole
_LOOKUP_BATCH = 500  # calls looked up in the cache at once while planning

# A judge: (assertion, answer, case, prompt) -> (outcome, judge calls, judge cost or None)
Judge = Callable[[assertions.Assertion, assertions.Answer, EvalCase, PromptSpec],
                 Awaitable[tuple[assertions.AssertionResult, float | None]]]


@dataclass
class SuiteRun:
    suite: str
    prompt_id: str
    prompt_version: str
    model: str
    cases: dict[str, CaseRun] = field(default_factory=dict)
    judge_cost_usd: float | None = 0.0
    problems: list[str] = field(default_factory=list)  # what stopped the suite or some of its cases
    repeat: int = 1  # initial samples a case
    retrieval: RetrievalRun | None = None  # when the cases' passages were retrieved (evals.passages)

    def extend(self, more: SuiteRun) -> None:
        """Append a confirmation run's samples to their cases (the judges it paid for too)."""
        for case_id, extra in more.cases.items():
            case = self.cases.get(case_id)
            if case is not None:
                self.cases[case_id] = replace(case, attempts=case.attempts + extra.attempts,
                                              initial=case.initial or len(case.attempts))
        self.judge_cost_usd = (None if self.judge_cost_usd is None or more.judge_cost_usd is None
                               else self.judge_cost_usd + more.judge_cost_usd)
        self.problems += [problem for problem in more.problems if problem not in self.problems]


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
    samples: range  # the sample indices asked for every case in play
    cases: dict[str, EvalCase] = field(default_factory=dict)  # the cases in play, in order
    cached: list[CallOutcome] = field(default_factory=list)
    pending: deque[Call] = field(default_factory=deque)
    answers: dict[str, list[CallOutcome | None]] = field(default_factory=dict)  # cases not yet complete
    assessed: dict[str, CaseRun] = field(default_factory=dict)

    async def execute(self, engine: CallEngine, judge: Judge | None,
                      on_outcome: Callable[[CallOutcome], None] = lambda outcome: None) -> SuiteRun:
        """Run the pending calls through ``engine``, assess every case, and return the suite run."""
        [run] = await execute_sides([(self, judge)], engine, on_outcome)
        return run

    def _arrived(self, outcome: CallOutcome, judge: Judge | None, assessing: set[asyncio.Task[None]]) -> None:
        """File an answer; once a case has all of its, assess it (judges may call models: a task)."""
        answers = self.answers[outcome.call.case_id]
        answers[self.samples.index(outcome.call.repeat)] = outcome
        if all(answer is not None for answer in answers):
            del self.answers[outcome.call.case_id]
            task = asyncio.create_task(self._assess_case(outcome.call.case_id, answers, judge))  # type: ignore[arg-type]
            assessing.add(task)
            task.add_done_callback(_forget_if_fine(assessing))

    async def _assess_case(self, case_id: str, answers: list[CallOutcome], judge: Judge | None) -> None:
        case, prompt = self.cases[case_id], self.prompt
        assert prompt is not None  # a side without its prompt has no calls
        attempts = [await _assess(case, self.suite, prompt, answer, judge, self.run) for answer in answers]
        self.assessed[case_id] = CaseRun(case.id, case.vars, case.expected, tuple(attempts))

    def _finish(self) -> SuiteRun:
        self.run.cases = {case_id: self.assessed[case_id] for case_id in self.cases if case_id in self.assessed}
        return self.run


async def execute_sides(sides: list[tuple[Side, Judge | None]], engine: CallEngine,
                        on_outcome: Callable[[CallOutcome], None] = lambda outcome: None) -> list[SuiteRun]:
    """Run the pending calls of several sides through ``engine`` as one stream, a call from each side
    in turn, assess every case, and return each side's run.

    Taking turns keeps base and head calls side by side in time: warm-up, new connections and a
    machine growing busier land on both alike instead of making one side look slower, and an
    identical request of the other side is still in flight when its twin comes to be sent.
    """
    assessing: set[asyncio.Task[None]] = set()

    def arrived(side: Side, judge: Judge | None, outcome: CallOutcome) -> None:
        on_outcome(outcome)
        side._arrived(outcome, judge, assessing)

    for side, judge in sides:
        cached, side.cached = side.cached, []
        for outcome in cached:
            arrived(side, judge, outcome)
    queues = [((side, judge), _drain(side.pending)) for side, judge in sides]
    await engine.stream(_in_turn(queues), lambda tag, outcome: arrived(tag[0], tag[1], outcome))
    await asyncio.gather(*assessing)
    return [side._finish() for side, _ in sides]


T = TypeVar("T")


def _in_turn(queues: list[tuple[T, Iterator[Call]]]) -> Iterator[tuple[T, Call]]:
    """One call from each queue in turn, until every queue is empty."""
    while queues:
        still = []
        for tag, calls in queues:
            call = next(calls, None)
            if call is not None:
                yield tag, call
                still.append((tag, calls))
        queues = still


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
              shard: tuple[int, int] | None = None, *, confirm: int = 0,
              only: Collection[str] | None = None, withheld: Attempt | None = None,
              withheld_cases: Collection[str] = ()) -> Side:
    """Render the suite's cases at this ref, address every call, and look each up in the cache.

    By default each case's initial samples; with ``confirm`` and ``only``, that many more samples
    of just those cases (sample indices after the initial ones: each its own call and cache slot).
    The ``withheld_cases`` (their passages could not be retrieved) are not sent: each of their
    attempts is the failed attempt ``withheld``.
    """
    times = suite_repeat(suite, workspace, repeat)
    samples = range(times, times + confirm) if confirm else range(times)
    prompt = workspace.prompts.get(suite.prompt)
    if prompt is None:
        side = Side(suite, None, SuiteRun(suite.name, suite.prompt, "", "", repeat=times), samples)
        side.run.problems.append(f"no prompt '{suite.prompt}' at this ref")
        return side
    limits = RenderLimits.from_config(workspace.config.lint.render_limits)
    side = Side(suite, prompt, SuiteRun(suite.name, prompt.id, prompt.version, prompt.model, repeat=times), samples)
    params = dict(prompt.params)
    batch: list[Call] = []
    for case in suite.cases:
        if not in_shard(suite, case, shard) or (only is not None and case.id not in only):
            continue
        side.cases[case.id] = case
        if withheld is not None and case.id in withheld_cases:
            side.assessed[case.id] = CaseRun(case.id, case.vars, case.expected, (withheld,) * len(samples))
            continue
        try:
            messages = render_messages(prompt, case.vars, limits)
        except TemplateError as exc:
            reason = f"does not render: {getattr(exc, 'message', None) or exc}"
            failed = Attempt(False, 0.0, None, None, None, None, None, (reason,), failure=Failure.NOT_RENDERED)
            side.assessed[case.id] = CaseRun(case.id, case.vars, case.expected, (failed,) * len(samples))
            continue
        side.answers[case.id] = [None] * len(samples)
        batch.extend(Call(call_key(prompt.model, messages, params, index), prompt.id, prompt.version, case.id, index,
                          prompt.model, messages, params) for index in samples)
        if len(batch) >= _LOOKUP_BATCH:
            _look_up(side, cache, batch)
            batch = []
    _look_up(side, cache, batch)
    return side


def suite_repeat(suite: EvalSuiteSpec, workspace: Workspace, repeat: int | None = None) -> int:
    """Initial samples a case: --repeat, else the suite's repeat:, else eval.repeat in promptops.yaml, else 1."""
    return int(repeat or suite.repeat or workspace.config.eval.repeat or 1)


def suite_confirm(suite: EvalSuiteSpec, workspace: Workspace, confirm: int | None = None) -> int:
    """Extra samples a side for a flagged case: --confirm, else the suite's, else eval.confirm, else 2."""
    for value in (confirm, suite.confirm, workspace.config.eval.confirm):
        if value is not None:
            return int(value)
    return DEFAULT_CONFIRM


def _look_up(side: Side, cache: ResultCache, calls: list[Call]) -> None:
    hits = cache.get_many([call.key for call in calls])
    for call in calls:
        hit = hits.get(call.key)
        if hit is None:
            side.pending.append(call)
        else:
            side.cached.append(cached_outcome(call, hit))


async def _assess(case: EvalCase, suite: EvalSuiteSpec, prompt: PromptSpec, outcome: CallOutcome,
                  judge: Judge | None, run: SuiteRun) -> Attempt:
    if outcome.error is not None or outcome.output is None:
        return Attempt(False, 0.0, None, None, None, None, None, (outcome.error or "no answer",),
                       failure=outcome.failure or Failure.NO_ANSWER, shared=outcome.shared)
    answer = assertions.Answer(outcome.output, outcome.latency_ms, outcome.cost_usd)
    scored = []
    for assertion in (*suite.default_assert, *case.asserts):
        if assertion.type in assertions.MODEL_JUDGED:
            result = await _judged(assertion, answer, case, prompt, judge, run)
        else:
            try:
                result = assertions.evaluate(assertion, answer, case.vars, case.expected)
            except ValueError as exc:  # malformed as written (lint: PO509): no answer passes it
                result = assertions.AssertionResult(False, 0.0, f"invalid assertion: {exc}")
        scored.append((assertion, result))
    threshold = case.threshold if case.threshold is not None else suite.threshold
    passed, score = assertions.score_case(scored, threshold)
    failures = tuple(f"{a.type}: {o.reason}" for a, o in scored if not o.passed and assertions.weight(a) > 0)
    latency = None if outcome.cached else outcome.latency_ms  # a cached answer's latency is from another run
    return Attempt(passed, score, _clipped(outcome.output), latency, outcome.input_tokens,
                   outcome.output_tokens, outcome.cost_usd, failures, outcome.cached, shared=outcome.shared)


def _clipped(output: str) -> str:
    """What a report shows of an answer; the cache keeps it whole."""
    return output if len(output) <= MAX_OUTPUT_CHARS else output[:MAX_OUTPUT_CHARS] + "…"


async def _judged(assertion: assertions.Assertion, answer: assertions.Answer, case: EvalCase, prompt: PromptSpec,
                  judge: Judge | None, run: SuiteRun) -> assertions.AssertionResult:
    if judge is None:
        return assertions.AssertionResult(False, 0.0, f"{assertion.type} needs a judge model, and none is configured")
    outcome, cost = await judge(assertion, answer, case, prompt)
    run.judge_cost_usd = None if cost is None or run.judge_cost_usd is None else run.judge_cost_usd + cost
    return outcome
