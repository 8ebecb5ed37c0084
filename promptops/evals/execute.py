"""`promptops eval` as a library call: pick the suites a change touches, run them at base and head, compare."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from promptops.config import Workspace, guarded_by
from promptops.evals.cache import ResultCache, cache_path
from promptops.evals.compare import SuiteComparison, compare
from promptops.evals import judges
from promptops.evals.assertions import Answer, Outcome
from promptops.evals.runner import CallEngine, CallOutcome, RunSettings, SpendBudget
from promptops.evals.suite import Judge, Side, SuiteRun, plan_side
from promptops.evals.workers import WorkerPool, worker_count
from promptops.modelparams import refusal, refused_extra
from promptops.models import ModelCatalog
from promptops.specs import EvalCase, EvalSuiteSpec, PromptSpec, RetrievalSpec, canonical_json
from promptops.templating import TemplateError, render


DEFAULT_JUDGE = "openai/gpt-4o-mini"
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


def settings_for(workspace: Workspace, options: EvalOptions) -> RunSettings:
    """promptops.yaml's eval: section, overridden by the run's options."""
    section = workspace.config.section("eval")
    return RunSettings(
        concurrency=options.concurrency or int(section.get("concurrency", 8)),
        per_provider=dict(options.per_provider),
        timeout_s=float(section.get("timeout_s", 60)),
        retries=int(section.get("retries", 4)),
        max_cost_usd=options.max_cost_usd if options.max_cost_usd is not None else section.get("max_cost_usd"),
        api_base=options.api_base or None,  # an empty PROMPTOPS_API_BASE is none
        # A local server takes any key, but the OpenAI client insists on one; a gateway gets the real one.
        api_key="unused" if options.api_base and not os.environ.get("OPENAI_API_KEY") else None,
    )


def select_suites(base: Workspace | None, head: Workspace, options: EvalOptions) -> tuple[list[EvalSuiteSpec], list[str]]:
    """The suites to run, and why the others are skipped."""
    if options.suites:
        wanted = set(options.suites)
        chosen = [s for s in head.suites if s.name in wanted or s.prompt in wanted]
        unknown = sorted(wanted - {s.name for s in chosen} - {s.prompt for s in chosen})
        return chosen, [f"no suite named {name}" for name in unknown]
    if options.run_all or base is None:
        return list(head.suites), []
    touched = _touched_prompts(base, head)
    base_suites = {suite.name: _suite_content(suite) for suite in base.suites}
    chosen, skipped = [], []
    for suite in head.suites:
        if suite.prompt in touched or base_suites.get(suite.name) != _suite_content(suite):
            chosen.append(suite)
        else:
            skipped.append(f"{suite.name}: nothing it depends on changed (--all runs it)")
    return chosen, skipped


def _touched_prompts(base: Workspace, head: Workspace) -> set[str]:
    """Prompts whose content changed or that are gone at head (removed, or no longer loading), or whose
    retrieval config's content changed.

    Content versions hash the parsed files, so a formatting-only edit touches nothing, as in
    ``promptops diff``; comparing them spares an eval run the semantic diff (and its import).
    """
    changed_retrievals = {rid for rid in {*base.retrievals, *head.retrievals}
                          if _version(base.retrievals.get(rid)) != _version(head.retrievals.get(rid))}
    return {pid for pid, spec in head.prompts.items()
            if _version(base.prompts.get(pid)) != spec.version or spec.retrieval_config in changed_retrievals
            } | {pid for pid in base.prompts if pid not in head.prompts}


def _version(spec: PromptSpec | RetrievalSpec | None) -> str | None:
    return spec.version if spec is not None else None


def _suite_content(suite: EvalSuiteSpec) -> str:
    """What a suite tests with: its own settings and every case, the dataset's included."""
    cases = [(c.id, c.vars, c.expected, c.asserts, c.threshold) for c in suite.cases]
    return canonical_json([suite.raw, cases])


def judge_for(workspace: Workspace, cache: ResultCache, settings: RunSettings) -> Judge:
    """Model-judged assertions with the project's judge and embedding models (defaults: in promptops.yaml)."""
    defaults = workspace.config.section("defaults")
    judge_model = defaults.get("judge") or defaults.get("model") or DEFAULT_JUDGE
    embedding_model = defaults.get("embedding") or DEFAULT_EMBEDDING
    catalog = ModelCatalog(workspace.config.section("pricing"))

    async def judge_one(assertion: dict[str, Any], answer: Answer, case: EvalCase,
                        prompt: PromptSpec) -> tuple[Outcome, int, float | None]:
        passages = case.vars.get(prompt.retrieval_into) if prompt.retrieval_into else None
        result = await judges.judge(
            assertion, answer, case.vars, case.expected, question=_question(prompt, case),
            passages=passages if isinstance(passages, list) else None, judge_model=judge_model,
            embedding_model=embedding_model, cache=cache, settings=settings, prompt_id=prompt.id,
            case_id=case.id, catalog=catalog,
        )
        return result.outcome, result.calls, result.cost_usd

    return judge_one


def _question(prompt: PromptSpec, case: EvalCase) -> str | None:
    """What the answer should answer: a `question` input if there is one, else the last user message."""
    if isinstance(case.vars.get("question"), str):
        return case.vars["question"]
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

    If ``progress`` has an ``expect(total)`` method, it is told first how many answers to expect.
    Every side of every suite is planned first (rendered, looked up in the cache), then all their
    calls run through one engine, so the concurrency bound stays full from the first call to the
    last; a big run spreads them over worker processes, a small or cached one stays here.
    """
    chosen, skipped = select_suites(base if options.compare else None, head, options)
    if options.compare:  # the cache, the bounds and the spend: the base's settings, not the change's (SECURITY.md, 1)
        head = replace(head, config=guarded_by(head.config, base.config))
    config = head.config
    path = options.cache or cache_path(config.root, config.section("eval").get("cache"))
    settings = settings_for(head, options)
    settings = replace(settings, budget=SpendBudget(settings.max_cost_usd))  # --max-cost is for the whole run
    catalog = ModelCatalog(config.section("pricing"))
    with ResultCache(path) as cache:
        starter = _WorkerStarter(path, settings, catalog, options.workers)
        sides = []
        for suite in chosen:
            refused = _refused(head, suite.prompt)
            if refused:  # nothing planned, nothing sent, no case passes: lint says why (PO604, PO605)
                sides.append((suite, _not_run(suite, refused), None))
                continue
            head_side = starter.planned(plan_side(suite, head, cache, options.repeat, options.shard))
            base_refused = _refused(base, suite.prompt) if options.compare else None
            if base_refused:
                skipped.append(f"{suite.name}: not run at base: {base_refused}")
            # The head's cases and assertions against the base's prompt: the same test on both sides.
            base_side = (starter.planned(plan_side(suite, base, cache, options.repeat, options.shard))
                         if options.compare and suite.prompt in base.prompts and not base_refused else None)
            sides.append((suite, head_side, base_side))
        expect = getattr(progress, "expect", None)
        if expect is not None:
            expect(sum(len(s.cached) + len(s.pending) for _, *pair in sides for s in pair if s is not None))
        async with CallEngine(cache, settings, catalog, starter.pool) as engine:
            await engine.check_credentials({c.model for _, *pair in sides for s in pair if s for c in s.pending})
            runs = await asyncio.gather(*(
                _execute(side, ws, cache, replace(settings, engine=engine), progress)
                for _, head_side, base_side in sides
                for side, ws in ((head_side, head), (base_side, base)) if side is not None))
    results = []
    gates_default = config.section("gates")
    done = iter(runs)
    for suite, _, base_side in sides:
        head_run = next(done)
        base_run = next(done) if base_side is not None else None
        results.append(compare(base_run, head_run, {**gates_default, **suite.gates}))
        skipped.extend(f"{suite.name}: {problem}" for problem in head_run.problems)
    return results, skipped


def _not_run(suite: EvalSuiteSpec, why: str) -> Side:
    """A side that makes no call and has no case, saying why (as plan_side does for a prompt that is missing)."""
    side = Side(suite, None, SuiteRun(suite.name, suite.prompt, "", ""), 0)
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


async def _execute(side: Side, workspace: Workspace, cache: ResultCache, settings: RunSettings,
                   progress: Callable[[CallOutcome], None]) -> SuiteRun:
    assert settings.engine is not None
    return await side.execute(settings.engine, judge_for(workspace, cache, settings), progress)


class _WorkerStarter:
    """Starts worker processes as soon as planning has found enough uncached calls to pay for them,
    so that their start-up (importing litellm) overlaps the rest of the planning."""

    def __init__(self, cache: Path, settings: RunSettings, catalog: ModelCatalog, requested: int | None) -> None:
        self.cache, self.settings, self.catalog, self.requested = cache, settings, catalog, requested
        self.pending = 0
        self.pool: WorkerPool | None = None

    def planned(self, side: Side) -> Side:
        self.pending += len(side.pending)
        count = worker_count(self.pending, self.settings.concurrency, self.requested)
        if self.pool is None and count:
            self.pool = WorkerPool(count, self.cache, self.settings, self.catalog.overrides)
        return side
