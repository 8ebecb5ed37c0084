"""`promptops eval` as a library call: pick the suites a change touches, run them at base and head, compare."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from promptops.config import Workspace, guarded_by
from promptops.evals import judges, stats
from promptops.evals.assertions import Answer, Assertion, AssertionResult
from promptops.evals.compare import compare_suites
from promptops.evals.credentials import missing_credentials
from promptops.evals.passages import Filled, PassageSource
from promptops.evals.runner import CallEngine, MissingCredentials, RunSettings, SpendBudget
from promptops.evals.suite import Judge, Side, SuiteRun, execute_sides, plan_side, suite_confirm
from promptops.evals.workers import WorkerPool, worker_count
from promptops.model.evals import CallOutcome, SuiteComparison
from promptops.modelparams import refusal, refused_extra
from promptops.models import ModelCatalog
from promptops.resultcache import ResultCache, cache_path
from promptops.specs import EvalCase, EvalSuiteSpec, PromptSpec, RetrievalSpec, canonical_json
from promptops.templating import TemplateError, render

DEFAULT_EMBEDDING = "openai/text-embedding-3-small"


@dataclass(frozen=True)
class EvalOptions:
    compare: bool = True
    suites: tuple[str, ...] = ()
    run_all: bool = False
    repeat: int | None = None
    concurrency: int | None = None
    max_cost_usd: float | None = None
    api_base: str | None = None
    per_provider: dict[str, int] = field(default_factory=dict)
    shard: tuple[int, int] | None = None  # (I, N): run only the I-th of N shares of the cases
    cache: Path | None = None  # default: eval.cache in promptops.yaml
    workers: int | None = None  # processes that make the calls; None: two per core for big runs, 0 or 1: this one
    confirm: int | None = None  # extra samples a side for flagged cases; None: the suite's, eval.confirm, or 2
    base_label: str = "the base"  # how reports name the base ref ("also fails on main")
    passages: PassageSource | None = None  # retrieves the passages of cases that give none (retrieval.evalcases)


def settings_for(workspace: Workspace, options: EvalOptions) -> RunSettings:
    """promptops.yaml's eval: section, overridden by the run's options."""
    section = workspace.config.eval
    return RunSettings(
        concurrency=options.concurrency or section.concurrency,
        per_provider=dict(options.per_provider),
        timeout_s=section.timeout_s,
        retries=section.retries,
        max_cost_usd=options.max_cost_usd if options.max_cost_usd is not None else section.max_cost_usd,
        api_base=options.api_base or None,  # an empty PROMPTOPS_API_BASE is none
        # A local server takes any key, but the OpenAI client insists on one; a gateway gets the real one.
        api_key="unused" if options.api_base and not os.environ.get("OPENAI_API_KEY") else None,
    )


def select_suites(base: Workspace | None, head: Workspace,
                  options: EvalOptions) -> tuple[list[EvalSuiteSpec], list[str]]:
    """The suites to run, and why the others are skipped."""
    if options.suites:
        wanted = set(options.suites)
        chosen = [s for s in head.suites if s.name in wanted or s.prompt in wanted]
        unknown = sorted(wanted - {s.name for s in chosen} - {s.prompt for s in chosen})
        return chosen, [f"no suite named {name}" for name in unknown]
    if options.run_all or base is None:
        return list(head.suites), []
    touched = _touched_prompts(base, head, options.passages)
    base_suites = {suite.name: _suite_content(suite) for suite in base.suites}
    chosen, skipped = [], []
    for suite in head.suites:
        if suite.prompt in touched or base_suites.get(suite.name) != _suite_content(suite):
            chosen.append(suite)
        else:
            skipped.append(f"{suite.name}: nothing it depends on changed (--all runs it)")
    return chosen, skipped


def _touched_prompts(base: Workspace, head: Workspace, passages: PassageSource | None = None) -> set[str]:
    """Prompts whose content changed or that are gone at head (removed, or no longer loading), or whose
    retrieval config's content changed, or (with a passage source) the documents of its corpus.

    Content versions hash the parsed files, so a formatting-only edit touches nothing, as in
    ``promptops diff``; comparing them spares an eval run the semantic diff (and its import).
    """
    changed_retrievals = {rid for rid in {*base.retrievals, *head.retrievals}
                          if _version(base.retrievals.get(rid)) != _version(head.retrievals.get(rid))}
    if passages is not None:  # a help article edited is a retrieval change too
        changed_retrievals |= {rid for rid in base.retrievals.keys() & head.retrievals.keys()
                               if rid not in changed_retrievals
                               and passages.corpus_version(base, rid) != passages.corpus_version(head, rid)}
    return {pid for pid, spec in head.prompts.items()
            if _version(base.prompts.get(pid)) != spec.version or spec.retrieval_config in changed_retrievals
            } | {pid for pid in base.prompts if pid not in head.prompts}


def _version(spec: PromptSpec | RetrievalSpec | None) -> str | None:
    return spec.version if spec is not None else None


def _suite_content(suite: EvalSuiteSpec) -> str:
    """What a suite tests with: its own settings and every case, the dataset's included."""
    cases = [(c.id, c.vars, c.expected, [a.raw for a in c.asserts], c.threshold) for c in suite.cases]
    return canonical_json([suite.raw, cases])


def judge_for(workspace: Workspace, cache: ResultCache, settings: RunSettings) -> Judge:
    """Model-judged assertions with the project's judge and embedding models (defaults: in promptops.yaml)."""
    defaults = workspace.config.defaults
    judge_model = judges.judge_model(defaults)
    embedding_model = defaults.embedding or DEFAULT_EMBEDDING
    catalog = ModelCatalog(workspace.config.pricing)

    async def judge_one(assertion: Assertion, answer: Answer, case: EvalCase,
                        prompt: PromptSpec) -> tuple[AssertionResult, float | None]:
        passages = case.vars.get(prompt.retrieval_into) if prompt.retrieval_into else None
        result = await judges.judge(
            assertion, answer, case.vars, case.expected, question=_question(prompt, case),
            passages=passages if isinstance(passages, list) else None, judge_model=judge_model,
            embedding_model=embedding_model, cache=cache, settings=settings, prompt_id=prompt.id,
            case_id=case.id, catalog=catalog,
        )
        return result.outcome, result.cost_usd

    return judge_one


def _question(prompt: PromptSpec, case: EvalCase) -> str | None:
    """What the answer should answer: a `question` input if there is one, else the last user message."""
    question = case.vars.get("question")
    if isinstance(question, str):
        return question
    users = [m for m in prompt.messages if m.role == "user"]
    if not users:
        return None
    try:
        return render(users[-1].content, case.vars)
    except TemplateError:
        return None


async def run_evaluation(base: Workspace, head: Workspace, options: EvalOptions,
                         progress: Callable[[CallOutcome], None] = lambda outcome: None,
                         ) -> tuple[list[SuiteComparison], list[str]]:
    """Run the chosen suites at head (and base) and compare them; ``progress`` sees every answer as it arrives.

    If ``progress`` has an ``expect(total)`` method, it is told how many answers to expect (again,
    with a larger total, when confirmation adds calls). Every side of every suite is planned first
    (rendered, looked up in the cache), then all their calls run through one engine, so the
    concurrency bound stays full from the first call to the last; a big run spreads them over
    worker processes, a small or cached one stays here. A request that base and head both make
    is sent once. Then every case that flipped, or whose samples disagree, is asked ``confirm``
    more times a side, through the same engine and budget.
    """
    chosen, skipped = select_suites(base if options.compare else None, head, options)
    if options.compare:  # the cache, the bounds and the spend: the base's settings, not the change's (SECURITY.md, 1)
        head = replace(head, config=guarded_by(head.config, base.config))
    config = head.config
    path = options.cache or cache_path(config.root, config.eval.cache)
    settings = settings_for(head, options)
    settings = replace(settings, budget=SpendBudget(settings.max_cost_usd))  # --max-cost is for the whole run
    catalog = ModelCatalog(config.pricing)
    with ResultCache(path) as cache:
        starter = _WorkerStarter(path, settings, catalog, options.workers)
        plans = []
        for suite in chosen:
            refused = _refused(head, suite.prompt)
            if refused:  # nothing planned, nothing sent, no case passes: lint says why (PO604, PO605)
                plans.append(_SuitePlan(suite, 0, _not_run(suite, refused), None))
                continue
            head_filled = await _filled(options.passages, suite, head, cache, settings)
            head_side = starter.planned(_planned(head_filled, head, cache, options))
            base_refused = _refused(base, suite.prompt) if options.compare else None
            if base_refused:
                skipped.append(f"{suite.name}: not run at base: {base_refused}")
            # The head's cases and assertions against the base's prompt: the same test on both sides.
            base_filled = (await _filled(options.passages, suite, base, cache, settings)
                           if options.compare and suite.prompt in base.prompts and not base_refused else None)
            base_side = starter.planned(_planned(base_filled, base, cache, options)) if base_filled else None
            plans.append(_SuitePlan(suite, suite_confirm(suite, head, options.confirm), head_side, base_side,
                                    head_filled.suite, base_filled.suite if base_filled else suite))
        expected = _Expected(progress)
        async with CallEngine(cache, settings, catalog, starter.pool) as engine:
            first = [(side, ws) for plan in plans for side, ws in plan.sides(head, base)]
            runs = iter(await _run_sides(engine, first, cache, settings, expected))
            for plan in plans:
                plan.head_run = next(runs)
                plan.base_run = next(runs) if plan.base_side is not None else None
            confirming = [(plan, side, ws) for plan in plans
                          for side, ws in plan.confirmation(head, base, cache, options)]
            extra = await _run_sides(engine, [(side, ws) for _, side, ws in confirming], cache, settings, expected)
            for (plan, _, ws), run in zip(confirming, extra):
                plan.add_confirmation(run, at_head=ws is head)
    results = []
    for plan in plans:
        assert plan.head_run is not None
        results.append(compare_suites(plan.base_run, plan.head_run, plan.suite.gates.over(config.gates),
                               confirm=plan.confirm, base_label=options.base_label))
        skipped.extend(f"{plan.suite.name}: {problem}" for problem in plan.head_run.problems)
        if plan.base_run is not None:  # the base's own (its retrieval failed): named, as the head's are
            skipped.extend(f"{plan.suite.name}: {problem}" for problem in plan.base_run.problems
                           if problem not in plan.head_run.problems)
    return results, skipped


async def _filled(source: PassageSource | None, suite: EvalSuiteSpec, workspace: Workspace, cache: ResultCache,
                  settings: RunSettings) -> Filled:
    """The suite with retrieved passages for the cases that give none, at this ref (as they are without a source)."""
    if source is None:
        return Filled(suite, None)
    assert settings.budget is not None
    return await source.fill(suite, workspace, cache, settings, settings.budget)


def _planned(filled: Filled, workspace: Workspace, cache: ResultCache, options: EvalOptions) -> Side:
    side = plan_side(filled.suite, workspace, cache, options.repeat, options.shard,
                     withheld=filled.withheld_attempt, withheld_cases=filled.withheld)
    side.run.retrieval = filled.retrieval
    side.run.problems += list(filled.problems)
    return side


@dataclass
class _SuitePlan:
    """One suite's sides at head and base, their runs, and their confirmation."""

    suite: EvalSuiteSpec
    confirm: int
    head_side: Side
    base_side: Side | None
    head_suite: EvalSuiteSpec | None = None  # the suite as each side runs it: with its retrieved passages
    base_suite: EvalSuiteSpec | None = None
    head_run: SuiteRun | None = None
    base_run: SuiteRun | None = None

    def sides(self, head: Workspace, base: Workspace) -> list[tuple[Side, Workspace]]:
        return [(self.head_side, head)] + ([(self.base_side, base)] if self.base_side is not None else [])

    def confirmation(self, head: Workspace, base: Workspace, cache: ResultCache,
                     options: EvalOptions) -> list[tuple[Side, Workspace]]:
        """Sides that ask every flagged case ``confirm`` more times, at head and base alike."""
        if self.base_run is None or self.head_run is None or not self.confirm:
            return []
        base_cases = self.base_run.cases
        flagged = {case_id for case_id, case in self.head_run.cases.items()
                   if case.passes and case_id in base_cases and base_cases[case_id].passes
                   and stats.needs_confirmation(base_cases[case_id].passes, case.passes)}
        if not flagged:
            return []
        return [(plan_side(suite or self.suite, workspace, cache, options.repeat, options.shard, confirm=self.confirm,
                           only=flagged), workspace)
                for suite, workspace in ((self.head_suite, head), (self.base_suite, base))]

    def add_confirmation(self, run: SuiteRun, *, at_head: bool) -> None:
        target = self.head_run if at_head else self.base_run
        assert target is not None
        target.extend(run)


class _Expected:
    """Tells ``progress`` how many answers are coming, adding each batch's to the total."""

    def __init__(self, progress: Callable[[CallOutcome], None]) -> None:
        self.progress, self.total = progress, 0

    def add(self, sides: list[Side]) -> None:
        self.total += sum(len(side.cached) + len(side.pending) for side in sides)
        expect = getattr(self.progress, "expect", None)
        if expect is not None:
            expect(self.total)


async def _run_sides(engine: CallEngine, sides: list[tuple[Side, Workspace]], cache: ResultCache,
                     settings: RunSettings, expected: _Expected) -> list[SuiteRun]:
    """Execute planned sides through ``engine``, their calls in turn; requests several sides make go out once."""
    if not sides:
        return []
    expected.add([side for side, _ in sides])
    engine.expect_repeats(call.key for side, _ in sides for call in side.pending)
    await engine.check_credentials({call.model for side, _ in sides for call in side.pending})
    judged = replace(settings, engine=engine)
    return await execute_sides([(side, judge_for(workspace, cache, judged)) for side, workspace in sides], engine,
                               expected.progress)


def _not_run(suite: EvalSuiteSpec, why: str) -> Side:
    """A side that makes no call and has no case, saying why (as plan_side does for a prompt that is missing)."""
    side = Side(suite, None, SuiteRun(suite.name, suite.prompt, "", ""), range(0))
    side.run.problems.append(f"not run: {why}")
    return side


def _refused(workspace: Workspace, prompt_id: str) -> str | None:
    """Why the prompt's calls must not be sent (model params off the allowlist, a URL for a model), with its file."""
    spec = workspace.prompts.get(prompt_id)
    why = refusal(spec.model, spec.params) if spec is not None else None
    if spec is None or why is None:
        return None
    keys = [key for key, _ in refused_extra(spec.params)]
    where = ("model", "params", "extra", keys[0]) if keys and keys[0] in (spec.params.get("extra") or {}) \
        else ("model", "name")
    line, col = spec.source.where(where, key=len(where) == 4)
    return f"{spec.source.display}:{line}:{col}: {why}"


class _WorkerStarter:
    """Starts worker processes as soon as planning has found enough uncached calls to pay for them,
    so that their start-up (importing litellm) overlaps the rest of the planning."""

    def __init__(self, cache: Path, settings: RunSettings, catalog: ModelCatalog, requested: int | None) -> None:
        self.cache, self.settings, self.catalog, self.requested = cache, settings, catalog, requested
        self.pending = 0
        self.models: set[str] = set()
        self.pool: WorkerPool | None = None

    def planned(self, side: Side) -> Side:
        self.pending += len(side.pending)
        self.models |= {call.model for call in side.pending}
        count = worker_count(self.pending, self.settings.concurrency, self.requested)
        if self.pool is None and count:
            problem = None if self.settings.api_base else missing_credentials(self.models, self.catalog)
            if problem:  # said now, not after workers have imported litellm for nothing
                raise MissingCredentials(problem)
            self.pool = WorkerPool(count, self.cache, self.settings, self.catalog.overrides)
        return side
