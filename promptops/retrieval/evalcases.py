"""Retrieval run for an eval suite: the passages of the cases that give none, and how well they match.

For a suite whose prompt has ``retrieval: {config, into}``, the ref's own
retrieval config builds its index (``pipeline.build_index``: an unchanged
corpus and chunking embed nothing) and answers each case's query; the passages
go into the case's ``into`` input, and a case that gives its own keeps them.
The query is the case's input named by the prompt's ``retrieval.query``, else
``question``, else its first text input. Each case that names
``expected_sources`` is scored: hit@k, recall@k and the rank of the first
passage from an expected source, where an expected source matches a passage
whose document id or path equals it or contains it. A suite with
``retrieval: {judge: [...]}`` also has each case's passages judged
(``evals.context``: context precision and recall), through the same cache and
spend cap.

At base, the corpus is read from the base ref's files (copied out to a
temporary folder), so base and head each use their own config and corpus;
indexes are kept under the project's ``.promptops/index`` either way. Every
embedding and rerank call counts in the run's spend cap; when the cap stops
one, the cases that wanted passages are not sent and fail the suite's gate
``within_spend_cap``, as capped model calls do. When retrieval fails (a corpus
that does not load, an embedding or rerank service error) or may not run (an
external store the base does not name), those cases are not sent either: they
fail the gate ``retrieved``, and the check counts them as incomplete, never as
answers that regressed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from statistics import fmean
from typing import Any

from promptops.config import Workspace
from promptops.evals.context import ContextCase, ContextVerdicts, expected_text, judge_contexts
from promptops.evals.judges import judge_model
from promptops.evals.passages import Filled
from promptops.evals.runner import RunSettings, SpendBudget
from promptops.model.evals import CaseRetrieval, Failure, RetrievalRun
from promptops.models import ModelCatalog
from promptops.resultcache import ResultCache
from promptops.retrieval.chunking import Tokens
from promptops.retrieval.corpus import FORMATS, load_corpus
from promptops.retrieval.embedding import CallOptions, EmbeddingError, embed_texts
from promptops.retrieval.index import Retrieved
from promptops.retrieval.pipeline import Built, CorpusError, RetrievalResult, build_index, embedding_cost, retrieve
from promptops.retrieval.rerank import RerankError, query_price
from promptops.retrieval.settings import RetrievalSettings
from promptops.retrieval.spend import SpendCapError, spending
from promptops.retrieval.store import EMBEDDED
from promptops.specs import EvalCase, EvalSuiteSpec, PromptSpec


class RetrievedPassages:
    """The ``evals.passages.PassageSource`` that runs a suite's retrieval config.

    ``trusted``: the base ref's workspace in a pull-request check. An external index store is a server
    the check sends the corpus (and, through ``$VAR`` in its URL, a token) to, so a head config may use
    one only as the base's config of the same id names it; otherwise its cases get no passages.
    """

    def __init__(self, trusted: Workspace | None = None) -> None:
        self.trusted = trusted

    async def fill(self, suite: EvalSuiteSpec, workspace: Workspace, cache: ResultCache, settings: RunSettings,
                   budget: SpendBudget) -> Filled:
        prompt = workspace.prompts.get(suite.prompt)
        if prompt is None or not prompt.retrieval_into or not prompt.retrieval_config:
            return Filled(suite, None, _unjudged(suite, f"prompt '{suite.prompt}' retrieves no passages "
                                                       "(it has no retrieval: {config, into})") if prompt else ())
        into = prompt.retrieval_into
        wanting = [case for case in suite.cases if into not in case.vars]
        if not wanting:  # every case brings its passages: nothing to build
            return Filled(suite, None, _unjudged(suite, f"every case gives its own '{into}'"))
        spec = workspace.retrievals.get(prompt.retrieval_config)
        where = f" at {workspace.label}" if workspace.label else ""
        if spec is None:
            return Filled(suite, None, (f"no retrieval config '{prompt.retrieval_config}'{where}: "
                                        + f"{len(wanting)} case(s) without '{into}' get no passages",))
        config = RetrievalSettings.from_spec(spec)
        refused = self._untrusted_store(config)
        if refused:
            return _withheld(suite, wanting, into, Failure.NO_PASSAGES,
                             f"retrieval with '{config.id}'{where} not run: {refused}")
        try:
            return await _filled(suite, prompt, into, config, spec.index_name, spec.source.path, workspace,
                                 wanting, cache, settings, budget)
        except SpendCapError as exc:  # incomplete, as a capped model call is: its cases fail within_spend_cap
            return _withheld(suite, wanting, into, Failure.SPEND_CAP,
                             f"the spend cap stopped retrieval with '{config.id}'{where} for its passages", str(exc))
        except (CorpusError, EmbeddingError, RerankError, ValueError) as exc:  # ChunkingError too
            # Sent without passages, a case would be judged on an answer to a question it was never asked.
            return _withheld(suite, wanting, into, Failure.NO_PASSAGES,
                             f"retrieval with '{config.id}'{where} failed: {exc}")


    def _untrusted_store(self, config: RetrievalSettings) -> str | None:
        """Why ``config``'s external store is not used here, or None when it may be."""
        if self.trusted is None or config.store is None or config.store.store == EMBEDDED:
            return None
        base = self.trusted.retrievals.get(config.id)
        if base is not None and RetrievalSettings.from_spec(base).store == config.store:
            return None
        return (f"index.store '{config.store.store}' (and its url) is not the base ref's: a pull request "
                "cannot choose the server the check sends its corpus and credentials to")

    def corpus_version(self, workspace: Workspace, config_id: str) -> str | None:
        spec = workspace.retrievals.get(config_id)
        corpus = RetrievalSettings.from_spec(spec).corpus if spec is not None else None
        if spec is None or corpus is None:
            return None
        root = workspace.config.root
        with _corpus_files(workspace, root) as corpus_root:
            folder = corpus_root / spec.source.path.parent.relative_to(root)
            folder.mkdir(parents=True, exist_ok=True)
            documents = load_corpus(corpus, folder, corpus_root).documents
        digest = hashlib.sha256()
        for document in documents:
            digest.update(json.dumps([document.id, document.text, document.metadata], sort_keys=True,
                                     default=str).encode())
        return digest.hexdigest()


def _withheld(suite: EvalSuiteSpec, wanting: list[EvalCase], into: str, failure: Failure, why: str,
              detail: str = "") -> Filled:
    """The suite with its cases that wanted passages not sent, each failing as ``failure`` because ``why``
    (the suite's note adds ``detail``)."""
    note = f"{why}: {detail}" if detail else why
    return Filled(suite, None, (f"{note}; {len(wanting)} case(s) without '{into}' not sent",),
                  withheld=tuple(case.id for case in wanting), withheld_as=failure, withheld_reason=f"not sent: {why}")


def _unjudged(suite: EvalSuiteSpec, why: str) -> tuple[str, ...]:
    """The note for a suite that asks for judged retrieval figures where nothing is retrieved."""
    if not suite.context_judged:
        return ()
    return (f"retrieval.judge ({', '.join(suite.context_judged)}) not applied: {why}, so nothing is retrieved "
            "to judge",)


async def _filled(suite: EvalSuiteSpec, prompt: PromptSpec, into: str, config: RetrievalSettings,
                  index_name: str | None,
                  config_path: Path, workspace: Workspace, wanting: list[EvalCase], cache: ResultCache,
                  settings: RunSettings, budget: SpendBudget) -> Filled:
    catalog = ModelCatalog(workspace.config.pricing)
    options = CallOptions(timeout_s=settings.timeout_s, api_base=settings.api_base, api_key=settings.api_key)
    root = workspace.config.root
    with _corpus_files(workspace, root) as corpus_root:
        folder = corpus_root / config_path.parent.relative_to(root)
        folder.mkdir(parents=True, exist_ok=True)  # a ref's copy holds only corpus files: globs start here
        built = await build_index(config, folder, corpus_root, cache, options, catalog, budget, index_root=root)
    queries = {case.id: query_of(prompt, case) for case in wanting}
    query_costs = _embedding_costs(config, queries, catalog)
    # One batched call for every query, its worst case reserved; each retrieve below then finds its vector cached.
    worst = None if any(cost is None for cost in query_costs) else sum(cost for cost in query_costs if cost is not None)
    _, queried = await spending(budget, worst,
                                f"embedding {len(queries)} queries with {config.embedding_model}",
                                embed_texts(list(queries.values()), config.embedding_model, config.dimensions, cache,
                                            options, catalog), lambda result: result[1].cost_usd)
    calls, costs = built.embedding.calls + queried.calls, [built.embedding.cost_usd, queried.cost_usd]
    reranks: list[float | None] = []
    filled: dict[str, EvalCase] = {}
    scored: dict[str, CaseRetrieval] = {}
    answers = await _retrieve_all(queries, built, config, cache, options, catalog, budget, settings.concurrency)
    for case in wanting:
        answer = answers[case.id]
        if answer.rerank is not None:
            calls += answer.rerank.calls
            costs.append(answer.rerank.cost_usd)
            reranks.append(answer.rerank.query_cost_usd)
        filled[case.id] = replace(case, vars={**case.vars, into: [p.chunk.text for p in answer.passages]})
        scored[case.id] = score(queries[case.id], answer.passages, case.expected_sources)
    judged = await _judged(suite, workspace, filled, into, scored, cache, settings, catalog)
    if judged is not None:
        scored = {case_id: replace(case, relevant=judged.relevant.get(case_id), supported=judged.supported.get(case_id))
                  for case_id, case in scored.items()}
    k = config.reranker_top_n or config.top_k
    per_query = _per_query(config, query_costs, reranks, catalog)
    run = RetrievalRun(
        config=config.id, index_name=index_name, index_key=built.key, embedding_model=config.embedding_model,
        chunking=asdict(config.chunking), k=k, cases=scored, kept=len(suite.cases) - len(wanting),
        corpus_chunks=built.corpus_chunks, corpus_tokens=built.corpus_tokens,
        reindex_cost_usd=embedding_cost(config.embedding_model, built.corpus_tokens, catalog),
        embedded_chunks=built.embedding.texts - built.embedding.cached, calls=calls,
        cost_usd=None if any(c is None for c in costs) else sum(c for c in costs if c is not None),
        query_cost_usd=per_query, judged=suite.context_judged,
        judge_model=_judge_model(suite, workspace) if judged is not None else None,
        judge_calls=judged.spend.calls if judged is not None else 0,
        judge_cost_usd=judged.spend.cost_usd if judged is not None else 0.0)
    cases = tuple(filled.get(case.id, case) for case in suite.cases)
    return Filled(replace(suite, cases=cases), run, tuple(judged.failures) if judged is not None else ())


async def _judged(suite: EvalSuiteSpec, workspace: Workspace, filled: dict[str, EvalCase], into: str,
                  scored: dict[str, CaseRetrieval], cache: ResultCache, settings: RunSettings,
                  catalog: ModelCatalog) -> ContextVerdicts | None:
    """The suite's ``retrieval.judge`` figures for every case that got retrieved passages (the judge's question
    is the case's retrieval query); None when the suite asks for none."""
    if not suite.context_judged:
        return None
    cases = [ContextCase(case.id, scored[case.id].query, case.vars[into], expected_text(case.expected))
             for case in filled.values()]
    return await judge_contexts(cases, suite.context_judged, _judge_model(suite, workspace), suite.prompt, cache,
                                settings, catalog)


def _judge_model(suite: EvalSuiteSpec, workspace: Workspace) -> str:
    return suite.context_judge_model or judge_model(workspace.config.defaults)


async def _retrieve_all(queries: dict[str, str], built: Built, config: RetrievalSettings, cache: ResultCache,
                        options: CallOptions, catalog: ModelCatalog, budget: SpendBudget,
                        concurrency: int) -> dict[str, RetrievalResult]:
    """Each case's passages, the searches and rerank calls in flight together (at most ``concurrency``):
    one after the other, a suite's rerank latencies would add up."""
    limit = asyncio.Semaphore(max(1, concurrency))

    async def one(query: str) -> RetrievalResult:
        async with limit:
            return await retrieve(query, built.index, config, cache, options, catalog, budget)

    tasks = [asyncio.ensure_future(one(query)) for query in queries.values()]
    try:
        answers = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:  # one failed: the others' answers are of no use
            task.cancel()
        raise
    return dict(zip(queries, answers))


def query_of(prompt: PromptSpec, case: EvalCase) -> str:
    """The case's retrieval query: the input ``retrieval.query`` names, else ``question``, else its first text."""
    name = prompt.query_input(case.vars)
    if name is not None:
        return str(case.vars[name])
    if prompt.retrieval_query:
        raise ValueError(f"case '{case.id}' has no text input '{prompt.retrieval_query}' "
                         "(the prompt's retrieval.query)")
    raise ValueError(f"case '{case.id}' has no text input to query with (set the prompt's retrieval.query)")


def score(query: str, passages: list[Retrieved], expected: tuple[str, ...]) -> CaseRetrieval:
    """What the passages give a case, against its expected sources."""
    sources = tuple(dict.fromkeys(p.chunk.document_id for p in passages))
    found = tuple(e for e in expected if any(_matches(e, p) for p in passages))
    first = next((rank for rank, p in enumerate(passages, start=1) if any(_matches(e, p) for e in expected)), None)
    return CaseRetrieval(query, sources, expected, found, first)


def _matches(expected: str, passage: Retrieved) -> bool:
    chunk = passage.chunk
    return expected in (chunk.document_id, chunk.path) or expected in chunk.document_id


def _per_query(config: RetrievalSettings, embedding: list[float | None], reranks: list[float | None],
               catalog: ModelCatalog) -> float | None:
    """A query's retrieval cost as production pays it: its embedding (the mean over the suite's queries, at
    the price map's input price) and, with a reranker, its price per query (for a model with none, the mean
    of what this run's reranks cost, cached ones as they cost when made). ``embedding``: each query's cost."""
    if not embedding or any(cost is None for cost in embedding):
        return None
    per_query = fmean(cost for cost in embedding if cost is not None)
    if config.reranker_model is None:
        return per_query
    priced = query_price(config.reranker_model, catalog)
    if priced is not None:
        return per_query + priced
    known = [cost for cost in reranks if cost is not None]
    return per_query + fmean(known) if known and len(known) == len(reranks) else None


def _embedding_costs(config: RetrievalSettings, queries: dict[str, str], catalog: ModelCatalog) -> list[float | None]:
    tokens = Tokens(config.embedding_model, "tokens")  # priced per token, whatever chunking counts
    return [embedding_cost(config.embedding_model, tokens.count(query), catalog) for query in queries.values()]


@contextmanager
def _corpus_files(workspace: Workspace, root: Path) -> Iterator[Path]:
    """The project's root to read the corpus from: the work tree, or a ref's corpus files copied out."""
    files: Any = workspace.files
    entries = getattr(files, "entries", None)
    if entries is None:
        yield root
        return
    repo_root: Path = files.repo_root
    with tempfile.TemporaryDirectory(prefix="promptops-corpus-") as folder:
        copy = Path(folder)
        for relative in entries:
            path = repo_root / relative
            if Path(relative).suffix.lower() not in FORMATS or not path.is_relative_to(root):
                continue
            text, _ = files.read(path, relative)
            if text is not None:  # a file too big or unreadable there: the corpus reports it missing
                (copy / relative).parent.mkdir(parents=True, exist_ok=True)
                (copy / relative).write_text(text, encoding="utf-8")
        yield copy / root.relative_to(repo_root)
