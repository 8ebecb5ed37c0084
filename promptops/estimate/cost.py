"""Tokens and money per call and per month, for one ref and between two.

Input tokens are counted on the messages a call would really send: each eval
case's vars rendered into the templates as given (median and p95 across
cases; lint checks the vars against the inputs schema), with
the input named by ``retrieval.into`` filled as the retriever would fill it:
``reranker.top_n`` (else ``retriever.top_k``) chunks of ``chunking.size``
tokens. Output tokens are the mean the model produced in cached eval results
where there are any, else ``max_tokens`` as an upper bound. Prices come from
litellm's price map, extended and overridden by ``pricing:``.

``cost_per_call`` is the model call alone (the figure ``budget.max_cost_per_call_usd``
judges). A prompt that retrieves also pays, each call, for its retrieval: the
query's embedding (the median query of the cases, the input
``PromptSpec.query_input`` picks, in the embedding model's tokens, at its input
price) and the reranker's price per query. That is ``retrieval_cost_per_call``,
and the monthly figure counts both.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from promptops.codes import COST_BUDGET_EXCEEDED, INPUT_BUDGET_EXCEEDED
from promptops.config import Workspace
from promptops.estimate.tokens import TokenCounter, cores
from promptops.findings import Finding, Severity
from promptops.model.cost import Change, CostReport, Estimate, OutputSource
from promptops.models import ModelCatalog
from promptops.pricing import litellm_version
from promptops.resultcache import cache_path, observed_output_tokens
from promptops.specs import PromptSpec, RetrievalSpec, content_version
from promptops.templating import RenderLimits, TemplateError, parse, reads_variables, render, sample_inputs

DAYS_PER_MONTH = 30
CHARS_PER_TOKEN = 4


class _Context:
    """What every prompt of one workspace is estimated with."""

    def __init__(self, workspace: Workspace) -> None:
        config = workspace.config
        self.workspace = workspace
        self.catalog = ModelCatalog(config.pricing)
        self.cache = cache_path(config.root, config.eval.cache)
        self.limits = RenderLimits.from_config(config.lint.render_limits)

    def fingerprint(self, prompt_id: str) -> str:
        """Everything an estimate depends on; equal fingerprints give equal estimates."""
        workspace, config = self.workspace, self.workspace.config
        spec = workspace.prompts[prompt_id]
        retrieval = workspace.retrievals.get(spec.retrieval_config or "")
        return content_version([
            spec.raw,
            retrieval.raw if retrieval else None,
            [case.vars for suite in workspace.suites if suite.prompt == prompt_id for case in suite.cases],
            config.section("usage").get(prompt_id),
            [config.section("pricing").get(model) for model in _priced_models(spec, retrieval)],
            config.section("lint").get("render_limits"),
            str(self.cache),
        ])


class Estimator:
    def __init__(self, counter: TokenCounter | None = None) -> None:
        self.counter = counter or TokenCounter()

    def workspace(self, workspace: Workspace) -> dict[str, Estimate]:
        return self.workspaces([workspace])[0]

    def workspaces(self, workspaces: list[Workspace]) -> list[dict[str, Estimate]]:
        """Estimates for every prompt of each workspace; a prompt that is the same in an earlier
        workspace (same spec, retrieval, cases, usage and price) is estimated once."""
        contexts = [_Context(workspace) for workspace in workspaces]
        tasks: dict[str, tuple[int, str]] = {}  # fingerprint -> the first (workspace, prompt) that has it
        wanted: list[tuple[int, str, str]] = []
        for index, context in enumerate(contexts):
            for prompt_id in sorted(context.workspace.prompts):
                fingerprint = context.fingerprint(prompt_id)
                tasks.setdefault(fingerprint, (index, prompt_id))
                wanted.append((index, prompt_id, fingerprint))
        done = dict(zip(tasks, self._run(contexts, list(tasks.values()))))
        results: list[dict[str, Estimate]] = [{} for _ in contexts]
        for index, prompt_id, fingerprint in wanted:
            spec = contexts[index].workspace.prompts[prompt_id]
            # A rename keeps the figures.
            results[index][prompt_id] = replace(done[fingerprint], path=spec.source.display)
        return results

    def _run(self, contexts: list[_Context], tasks: list[tuple[int, str]]) -> list[Estimate]:
        tested = [Counter(suite.prompt for suite in context.workspace.suites for _ in suite.cases)
                  for context in contexts]
        samples = sum(tested[index][prompt_id] for index, prompt_id in tasks)
        workers = min(cores(), len(tasks))
        if workers < 2 or samples < PARALLEL_FROM_SAMPLES:
            return [self._one(contexts[index], prompt_id) for index, prompt_id in tasks]
        import multiprocessing  # here: a commit hook's run is too small to fork, and need not import it

        if "fork" not in multiprocessing.get_all_start_methods():
            return [self._one(contexts[index], prompt_id) for index, prompt_id in tasks]
        # Prompts are independent: share them out to one forked process a core. The workers
        # inherit the loaded workspaces and tokenizers; only task numbers go out and estimates come back.
        models = {spec.model for context in contexts for spec in context.workspace.prompts.values()}
        models |= {retrieval.embedding_model  # the retrieval cost counts queries in its tokens
                   for context in contexts for retrieval in context.workspace.retrievals.values()}
        for model in sorted(models):
            self.counter.count_text(model, "")  # load each encoding once, before the fork
        global _FORKED
        _FORKED = (self, contexts, tasks)
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                return pool.map(_estimate_forked, range(len(tasks)), chunksize=max(1, len(tasks) // (workers * 8)))
        finally:
            _FORKED = None

    def _one(self, context: _Context, prompt_id: str) -> Estimate:
        calls = context.workspace.config.calls_per_day.get(prompt_id)
        spec = context.workspace.prompts[prompt_id]
        return self.prompt(spec, context.workspace, context.catalog, calls, context.cache, context.limits)

    def prompt(self, spec: PromptSpec, workspace: Workspace, catalog: ModelCatalog, calls_per_day: float | None,
               cache: Any, limits: RenderLimits) -> Estimate:
        warnings: list[str] = []
        config = _retrieval_config(spec, workspace, warnings)
        retrieval, per_call_retrieval = _retrieval_fill(spec, config)
        samples, basis = _samples(spec, workspace)
        retrieval_cost, retrieval_basis = self._retrieval_cost(spec, config, samples, catalog, warnings)
        counts = self._count(spec, samples, retrieval, per_call_retrieval, limits, warnings)
        median = int(round(_median(counts))) if counts else None
        p95 = _percentile(counts, 95) if counts else None
        output, output_source, output_basis = _output_tokens(spec, cache, warnings)
        info = catalog.get(spec.model)
        cost = None
        if info is None or not info.price.complete:
            warnings.append(f"model '{spec.model}' has no known price; add it under pricing: in promptops.yaml")
        elif median is not None and output is not None:
            cost = info.price.call_cost(median, output)
        monthly = None
        if cost is not None and retrieval_cost is not None and calls_per_day is not None:
            monthly = (cost + retrieval_cost) * calls_per_day * DAYS_PER_MONTH
        return Estimate(
            prompt_id=spec.id, path=spec.source.display, version=spec.version, model=spec.model,
            input_tokens=median, input_tokens_p95=p95, samples=len(counts), input_basis=basis,
            retrieval_tokens=per_call_retrieval, token_method=self.counter.method(spec.model),
            output_tokens=output, output_basis=output_basis, cost_per_call=cost,
            calls_per_day=calls_per_day, monthly_cost=monthly,
            price_source=info.source if info else None, warnings=tuple(warnings),
            retrieval_into=retrieval[0] if retrieval else None, retrieval_chunks=retrieval[1] if retrieval else 0,
            output_source=output_source, retrieval_cost_per_call=retrieval_cost, retrieval_basis=retrieval_basis,
        )

    def _retrieval_cost(self, spec: PromptSpec, config: RetrievalSpec | None, samples: list[dict[str, Any]],
                        catalog: ModelCatalog, warnings: list[str]) -> tuple[float | None, str]:
        """What retrieval adds to one call (0 for a prompt that retrieves nothing, None when a price is unknown),
        and how it was obtained: the median query of ``samples`` embedded at the embedding model's input price
        (in its tokens, whatever chunking's unit: the price is per token), plus the reranker's price per query."""
        if not spec.retrieval_config or not spec.retrieval_into:
            return 0.0, ""
        if config is None:
            return None, "unknown (no retrieval config)"
        queries = [(name, str(variables[name])) for variables in samples
                   if (name := spec.query_input(variables)) is not None]
        if not queries:
            warnings.append("no sample has a query input (retrieval.query, else question, else a text input): "
                            "retrieval cost unknown")
            return None, "unknown (no query input)"
        embedding = config.embedding_model
        tokens = int(round(_median(self.counter.count_many(embedding, [text for _, text in queries]))))
        names = ", ".join(sorted({name for name, _ in queries}))
        basis = (f"the query embedded with {embedding} ({tokens:,} tokens, the median over {len(queries)} "
                 f"samples' {names})")
        cost = catalog.input_cost(embedding, tokens)
        if cost is None:
            warnings.append(f"embedding model '{embedding}' has no known input price: retrieval cost unknown; "
                            "add it under pricing: in promptops.yaml")
        if config.reranker_model is None:
            return cost, basis
        per_query = catalog.query_cost(config.reranker_model)
        if per_query is None:
            warnings.append(f"reranker '{config.reranker_model}' has no known price per query: retrieval cost "
                            "unknown; add per_query under pricing: in promptops.yaml")
        price = f"${per_query:g} a query" if per_query is not None else "no known price"
        basis += f", and a rerank by {config.reranker_model} ({price})"
        return (None if cost is None or per_query is None else cost + per_query), basis

    def _count(self, spec: PromptSpec, samples: list[dict[str, Any]], retrieval: tuple[str, int] | None,
               retrieval_tokens: int, limits: RenderLimits, warnings: list[str]) -> list[int]:
        requests = []
        failures: dict[str, int] = {}
        try:
            static = _static_messages(spec, limits)
        except TemplateError as exc:
            warnings.append(f"not counted: {getattr(exc, 'message', None) or exc}")
            return []
        for variables in samples:
            if retrieval is not None:
                into, chunks = retrieval
                # Empty chunks keep the template's own framing per chunk; their size is added below.
                variables = {**variables, into: [""] * chunks}
            try:
                requests.append(_messages(spec, variables, static, limits))
            except TemplateError as exc:
                reason = str(getattr(exc, "message", None) or exc).split(":")[0]
                failures[reason] = failures.get(reason, 0) + 1
        for reason, times in sorted(failures.items()):
            warnings.append(f"{times} sample(s) not counted: {reason}")
        return [count + retrieval_tokens for count in self.counter.count_messages_many(spec.model, requests)]


def _static_messages(spec: PromptSpec, limits: RenderLimits) -> dict[int, str]:
    """Messages that read no variable render the same for every case: render them once."""
    static = {}
    for index, message in enumerate(spec.messages):
        if not reads_variables(parse(message.content)):
            static[index] = render(message.content, {}, limits)
    return static


def _messages(spec: PromptSpec, variables: dict[str, Any], static: dict[int, str],
              limits: RenderLimits) -> list[dict[str, str]]:
    messages = []
    for index, message in enumerate(spec.messages):
        content = static[index] if index in static else render(message.content, variables, limits)
        messages.append({"role": message.role, "content": content, **({"name": message.name} if message.name else {})})
    return messages


PARALLEL_FROM_SAMPLES = 5_000  # eval cases to render; below this, starting processes costs more than it saves
_FORKED: tuple[Estimator, list[_Context], list[tuple[int, str]]] | None = None


def _estimate_forked(task: int) -> Estimate:
    assert _FORKED is not None, "only called in a worker forked by Estimator._run"
    estimator, contexts, tasks = _FORKED
    index, prompt_id = tasks[task]
    return estimator._one(contexts[index], prompt_id)


def _retrieval_config(spec: PromptSpec, workspace: Workspace, warnings: list[str]) -> RetrievalSpec | None:
    """The retrieval config the prompt retrieves with; None when it retrieves nothing or the config is missing."""
    if not spec.retrieval_config or not spec.retrieval_into:
        return None
    retrieval = workspace.retrievals.get(spec.retrieval_config)
    if retrieval is None:
        warnings.append(f"retrieval config '{spec.retrieval_config}' not found: retrieved chunks not counted, "
                        "retrieval cost unknown")
    return retrieval


def _retrieval_fill(spec: PromptSpec, retrieval: RetrievalSpec | None) -> tuple[tuple[str, int] | None, int]:
    """(input name, chunk count) and the tokens those chunks add, from the prompt's retrieval config."""
    if retrieval is None or not spec.retrieval_into:
        return None, 0
    per_chunk = retrieval.chunk_size
    if retrieval.chunk_unit == "characters":
        per_chunk = math.ceil(per_chunk / CHARS_PER_TOKEN)
    chunks = retrieval.chunks_returned
    return (spec.retrieval_into, chunks), chunks * per_chunk


def _priced_models(spec: PromptSpec, retrieval: RetrievalSpec | None) -> list[str]:
    """The models whose prices an estimate of ``spec`` reads: its own, and its retrieval's."""
    models = [spec.model]
    if retrieval is not None:
        models += [retrieval.embedding_model, *([retrieval.reranker_model] if retrieval.reranker_model else [])]
    return models


def _samples(spec: PromptSpec, workspace: Workspace) -> tuple[list[dict[str, Any]], str]:
    cases = [case.vars for suite in workspace.suites if suite.prompt == spec.id for case in suite.cases]
    if cases:
        return cases, f"{len(cases)} eval case{'s' * (len(cases) != 1)}"
    return [sample_inputs(spec)], "sample inputs (no eval cases)"


def _output_tokens(spec: PromptSpec, cache: Any, warnings: list[str]) -> tuple[float | None, OutputSource, str]:
    observed = observed_output_tokens(cache, spec.id, spec.model, spec.version)
    if observed is not None:
        which = "this version" if observed.same_version else "earlier versions"
        return observed.mean_tokens, OutputSource.OBSERVED, f"mean of {observed.calls} cached eval results ({which})"
    max_tokens = spec.params.get("max_tokens")
    if max_tokens is not None:
        return float(max_tokens), OutputSource.MAX_TOKENS, "max_tokens (an upper bound: no eval results cached)"
    warnings.append("no max_tokens and no cached eval results: output tokens unknown")
    return None, OutputSource.UNKNOWN, "unknown"


GAP_WORTH_EXPLAINING = 2.0  # estimated / measured cost per call beyond this (or below its inverse) is explained


def explain_gap(estimate: Estimate, measured_cost: float | None, measured_input: float | None,
                measured_output: float | None) -> str | None:
    """Why the estimated cost per call (from the files) is more than twice, or less than half, the cost
    measured on eval answers; None when they are within 2x of each other or either is unknown."""
    estimated = estimate.cost_per_call
    if estimated is None or measured_cost is None or estimated <= 0 or measured_cost <= 0:
        return None
    ratio = estimated / measured_cost
    if 1 / GAP_WORTH_EXPLAINING <= ratio <= GAP_WORTH_EXPLAINING:
        return None
    reasons = []
    if measured_input and estimate.input_tokens and not 0.67 <= estimate.input_tokens / measured_input <= 1.5:
        if estimate.retrieval_into and estimate.retrieval_tokens:
            # The estimate's fill is an upper bound: every chunk at the full chunking.size.
            reasons.append(f"the estimate fills {estimate.retrieval_into} with {estimate.retrieval_chunks} chunks "
                           f"(reranker.top_n, else retriever.top_k) of the full chunking.size "
                           f"({estimate.retrieval_tokens:,} tokens), an upper bound, where the measured calls had "
                           f"the passages their eval cases gave or retrieved: {estimate.input_tokens:,} input tokens "
                           f"estimated, {measured_input:,.0f} measured")
        else:
            reasons.append(f"{estimate.input_tokens:,} input tokens estimated, {measured_input:,.0f} measured "
                           f"({estimate.token_method.encoding} count against the provider's)")
    if measured_output and estimate.output_tokens and not 0.67 <= estimate.output_tokens / measured_output <= 1.5:
        basis = "max_tokens" if estimate.output_source is OutputSource.MAX_TOKENS else estimate.output_basis
        reasons.append(f"output: {estimate.output_tokens:,.0f} tokens estimated ({basis}), {measured_output:,.0f} "
                       "measured")
    how = "; ".join(reasons) or "the eval cases' calls are not the calls the estimate assumes"
    side = f"{ratio:.1f}x" if ratio > 1 else f"1/{1 / ratio:.1f}"
    return f"the estimate is {side} the measured cost: {how}"


def _median(values: list[int]) -> float:
    """statistics.median, without importing statistics on the commit path: the middle value, or the mean of
    the two middle values."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _percentile(values: list[int], pct: float) -> int:
    """Nearest-rank percentile: a value that was really observed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def compare_costs(base: Workspace, head: Workspace, base_label: str, head_label: str,
            estimator: Estimator | None = None) -> CostReport:
    base_estimates, head_estimates = (estimator or Estimator()).workspaces([base, head])
    changes = [
        Change(prompt_id, _status(base_estimates.get(prompt_id), head_estimates.get(prompt_id)),
               base_estimates.get(prompt_id), head_estimates.get(prompt_id))
        for prompt_id in sorted(set(base_estimates) | set(head_estimates))
    ]
    monthly_base, unknown_base = _monthly_total(base_estimates.values())
    monthly_head, unknown_head = _monthly_total(head_estimates.values())
    findings, preexisting = _budget_findings(head, head_estimates, base_estimates, base_label)
    return CostReport(
        base_label=base_label, head_label=head_label, changes=changes,
        monthly_base=monthly_base, monthly_head=monthly_head,
        unknown_monthly=sorted(set(unknown_base) | set(unknown_head)),
        findings=findings, assumptions=_assumptions(head, changes), preexisting=preexisting,
    )


def _status(base: Estimate | None, head: Estimate | None) -> str:
    if base is None:
        return "added"
    if head is None:
        return "removed"
    return "unchanged" if _compared(base) == _compared(head) else "changed"


def _compared(estimate: Estimate) -> tuple[Any, ...]:
    """What moves a prompt from unchanged to changed (a reranker swap moves the retrieval cost alone)."""
    return estimate.version, estimate.cost_per_call, estimate.input_tokens, estimate.retrieval_cost_per_call


def _monthly_total(estimates: Iterable[Estimate]) -> tuple[float, list[str]]:
    total, unknown = 0.0, []
    for estimate in estimates:
        if estimate.calls_per_day is None:
            continue
        if estimate.monthly_cost is None:
            unknown.append(estimate.prompt_id)
        else:
            total += estimate.monthly_cost
    return total, unknown


# budget key -> (rule code, the estimate's figure, how the breach reads)
_BUDGETS = {
    "max_input_tokens": (INPUT_BUDGET_EXCEEDED, "input_tokens_p95",
                         "needs {value:,} input tokens at p95, over its budget of {limit:,}"),
    "max_cost_per_call_usd": (COST_BUDGET_EXCEEDED, "cost_per_call",
                              "costs ${value:.6f} per call, over its budget of ${limit:g}"),
}


def _budget_findings(head: Workspace, estimates: dict[str, Estimate], base_estimates: dict[str, Estimate],
                     base_label: str) -> tuple[list[Finding], set[tuple[str, str]]]:
    """The head's budget breaches, and which of them (path, code) the base breaks as well."""
    findings, preexisting = [], set()
    for prompt_id, estimate in estimates.items():
        spec = head.prompts[prompt_id]
        for key, (code, figure, wording) in _BUDGETS.items():
            limit, value = spec.budget.get(key), getattr(estimate, figure)
            if limit is not None and value is not None and value > limit:
                line, col = spec.source.where(("budget", key))
                message = f"'{prompt_id}' " + wording.format(value=value, limit=limit)
                before = getattr(base_estimates.get(prompt_id), figure, None)
                if before is not None and before > limit:
                    shown = f"${before:.6f}" if code == COST_BUDGET_EXCEEDED else f"{before:,}"
                    message += f"; also fails on {base_label} ({shown})"
                    preexisting.add((spec.source.display, code))
                findings.append(Finding(spec.source.display, line, col, code, message, Severity.ERROR))
    return sorted(findings), preexisting


def _assumptions(head: Workspace, changes: list[Change]) -> list[str]:
    notes = [f"Monthly figures: calls_per_day from usage: in promptops.yaml x {DAYS_PER_MONTH} days."]
    if any(e and e.retrieval_cost_per_call != 0 for c in changes for e in (c.base, c.head)):
        notes.append("Cost per call is the model call (budget.max_cost_per_call_usd judges it); a prompt that "
                     "retrieves also pays retrieval per call (embedding the query, and the reranker's price per "
                     "query), and its monthly figure counts both.")
    sources = sorted({e.price_source for c in changes for e in (c.base, c.head) if e and e.price_source})
    if sources:
        notes.append(f"Prices (litellm {litellm_version()}): " + "; ".join(sources) + ".")
    methods = sorted({e.token_method.note for c in changes for e in (c.base, c.head) if e})
    notes.extend(f"Tokens: {note}." for note in methods)
    return notes
