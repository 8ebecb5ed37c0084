"""Retrieved chunks reordered by a rerank model through litellm's async rerank API, answers cached.

A rerank answer is a row of the result cache like an embedding's: key
``call_key(model, [{"role": "query", ...}, {"role": "document", ...}...],
{"kind": "rerank", "top_n": n}, 0)``, ``prompt_id`` ``retrieval:rerank``,
``output`` the ranking as JSON ``[[index, relevance_score], ...]``, so a
re-run with the same query and chunks makes no call.

A rerank is priced per query (``Price.per_query``, litellm's
``input_cost_per_query``, or ``pricing:``), whatever its tokens: that price is
reserved against the spend cap before the call, is what the call costs
(litellm's ``response_cost`` only for a model no price is known for), and is
what a cached answer's query costs in production.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from promptops.modelparams import endpoint_in_model
from promptops.models import ModelCatalog
from promptops.pricing import reported_cost
from promptops.resultcache import CachedResult, ResultCache, call_key
from promptops.retrieval.embedding import CallOptions
from promptops.retrieval.index import Retrieved
from promptops.retrieval.spend import Spend, spending

PROMPT_ID = "retrieval:rerank"


class RerankError(Exception):
    """A rerank call failed, or its answer cannot be used; the message says which model and why."""


@dataclass(frozen=True)
class RerankRun:
    calls: int  # 0 when the answer came from the cache
    cost_usd: float | None  # spent in this run (0 for a cached answer)
    query_cost_usd: float | None = None  # what the query costs in production, cached or not (None: unknown)


async def rerank(query: str, retrieved: list[Retrieved], model: str, top_n: int, cache: ResultCache,
                 options: CallOptions = CallOptions(), catalog: ModelCatalog | None = None,
                 spend: Spend | None = None) -> tuple[list[Retrieved], RerankRun]:
    """The ``top_n`` most relevant of ``retrieved`` by the rerank model, best first, scored by it."""
    if not retrieved:
        return [], RerankRun(0, 0.0, 0.0)
    price = query_price(model, catalog)
    documents = [r.chunk.text for r in retrieved]
    messages = [{"role": "query", "content": query}, *({"role": "document", "content": d} for d in documents)]
    key = call_key(model, messages, {"kind": "rerank", "top_n": top_n}, 0)
    hit = cache.get(key)
    if hit is not None and hit.output:
        known = price if price is not None else hit.cost_usd
        return _reordered(retrieved, json.loads(hit.output), model), RerankRun(0, 0.0, known)
    ranking, measured = await spending(spend, price, f"reranking a query with {model}",
                                       _call(query, documents, model, top_n, options),
                                       lambda answer: price if price is not None else answer[1])
    cost = price if price is not None else measured
    cache.put(CachedResult(key, PROMPT_ID, "rerank", model, "", 0, json.dumps(ranking), None, None, None, cost))
    return _reordered(retrieved, ranking, model), RerankRun(1, cost, cost)


def query_price(model: str, catalog: ModelCatalog | None = None) -> float | None:
    """What one rerank query costs at the model's price per query (None: the price map and pricing: give none)."""
    return (catalog or ModelCatalog()).query_cost(model)


async def _call(query: str, documents: list[str], model: str, top_n: int,
                options: CallOptions) -> tuple[list[list[Any]], float | None]:
    refused = endpoint_in_model(model)
    if refused:
        raise RerankError(f"rerank call not sent: {refused}")
    from promptops.evals.runner import describe_error, import_litellm
    from promptops.report.safety import environment_redactor

    litellm = import_litellm()
    try:
        response = await litellm.arerank(model=model, query=query, documents=documents, top_n=top_n,
                                         timeout=options.timeout_s, api_base=options.api_base, api_key=options.api_key)
    except Exception as exc:  # litellm maps every provider error to its own types
        raise RerankError(f"rerank call to {model} failed: {environment_redactor()(describe_error(exc))}") from None
    ranking = [[_field(r, "index"), _field(r, "relevance_score")] for r in getattr(response, "results", None) or []]
    return ranking, reported_cost(response)


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _reordered(retrieved: list[Retrieved], ranking: list[list[Any]], model: str) -> list[Retrieved]:
    reordered = []
    for index, score in ranking:
        if not (isinstance(index, int) and 0 <= index < len(retrieved) and isinstance(score, (int, float))):
            raise RerankError(f"rerank call to {model} answered an unusable result: index {index!r}, score {score!r}")
        reordered.append(Retrieved(retrieved[index].chunk, float(score)))
    return reordered
