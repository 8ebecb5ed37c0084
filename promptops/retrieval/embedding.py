"""Texts embedded through litellm's async embedding API, batched, every vector cached.

Each vector is a row of the project's result cache, addressed by its content:
``call_key(model, [{"role": "input", "content": text}], {"kind":
"retrieval-embedding", "dimensions": ...}, 0)`` (dimensions only when the
config sets them). So an unchanged corpus re-embeds nothing, and a changed
document re-embeds only the chunks whose text changed. The row's ``output``
is the vector as base64 float32 (little-endian): JSON would take seconds to
read back for 10,000 chunks. Its ``prompt_id`` is ``retrieval:embedding``,
its ``input_tokens`` and ``cost_usd`` the vector's share of its batch's.

Missing texts go in batches of ``batch_size`` inputs, ``concurrency`` batches
in flight; each batch is stored as soon as it arrives, so a run stopped half
way keeps what it paid for. The openai SDK under litellm retries 429s and 5xx
itself (twice, honouring Retry-After); a batch that still fails raises
``EmbeddingError``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from promptops.modelparams import endpoint_in_model
from promptops.models import ModelCatalog
from promptops.pricing import reported_cost
from promptops.resultcache import CachedResult, ResultCache, call_key

if TYPE_CHECKING:
    from numpy.typing import NDArray

PROMPT_ID = "retrieval:embedding"
KIND = "retrieval-embedding"  # keeps these rows apart from the judges' embeddings (JSON vectors)


class EmbeddingError(Exception):
    """An embedding call failed, or its answer cannot be used; the message says which model and why."""


@dataclass(frozen=True)
class CallOptions:
    batch_size: int = 128
    concurrency: int = 4
    timeout_s: float = 60.0
    api_base: str | None = None
    api_key: str | None = None


@dataclass(frozen=True)
class EmbeddingRun:
    """What embedding a list of texts took."""

    texts: int  # distinct texts asked for
    cached: int  # of them, found in the cache
    calls: int  # embedding calls made now
    tokens: int  # input tokens the calls were billed
    cost_usd: float | None  # what the calls cost; None if any call's cost is unknown
    seconds: float


def vector_key(model: str, dimensions: int | None, text: str) -> str:
    """The content address of one text's vector."""
    params: dict[str, Any] = {"kind": KIND}
    if dimensions is not None:
        params["dimensions"] = dimensions
    return call_key(model, [{"role": "input", "content": text}], params, 0)


async def embed_texts(texts: Sequence[str], model: str, dimensions: int | None, cache: ResultCache,
                      options: CallOptions = CallOptions(),
                      catalog: ModelCatalog | None = None) -> tuple[NDArray[np.float32], EmbeddingRun]:
    """One L2-normalised float32 row per text, in order, and what it took."""
    started = time.perf_counter()
    distinct = list(dict.fromkeys(texts))
    keys = {text: vector_key(model, dimensions, text) for text in distinct}
    found = cache.get_many(list(keys.values()))
    decoded = {text: _decode(found[key].output) for text, key in keys.items() if key in found}
    vectors = {text: vector for text, vector in decoded.items() if vector is not None}
    missing = [text for text in distinct if text not in vectors]
    batches = [missing[i:i + options.batch_size] for i in range(0, len(missing), options.batch_size)]
    spent = await _embed_missing(batches, model, dimensions, keys, cache, options, catalog, vectors)
    run = EmbeddingRun(len(distinct), len(distinct) - len(missing), len(batches), sum(s[0] for s in spent),
                       _total([s[1] for s in spent]), time.perf_counter() - started)
    return _matrix([vectors[text] for text in texts], model), run


async def _embed_missing(batches: list[list[str]], model: str, dimensions: int | None, keys: dict[str, str],
                         cache: ResultCache, options: CallOptions, catalog: ModelCatalog | None,
                         vectors: dict[str, NDArray[np.float32]]) -> list[tuple[int, float | None]]:
    """Embed and store each batch; fills ``vectors``; each batch's (tokens, cost)."""
    if not batches:
        return []
    refused = endpoint_in_model(model)
    if refused:  # as the eval runner does: never sent
        raise EmbeddingError(f"embedding call not sent: {refused}")
    from promptops.evals.runner import import_litellm

    litellm = import_litellm()
    limit = asyncio.Semaphore(options.concurrency)
    prices = catalog or ModelCatalog()  # one catalog: each reads litellm's price map once

    async def one(batch: list[str]) -> tuple[int, float | None]:
        async with limit:
            response = await _call(litellm, batch, model, dimensions, options)
        batch_vectors = _vectors(response, len(batch), model)
        tokens = int(getattr(getattr(response, "usage", None), "prompt_tokens", None) or 0)
        cost = _cost(prices, model, response, tokens)
        cache.put_many([_row(keys[text], model, vector, tokens / len(batch),
                             None if cost is None else cost / len(batch))
                        for text, vector in zip(batch, batch_vectors)])
        vectors.update(zip(batch, batch_vectors))
        return tokens, cost

    return list(await asyncio.gather(*(one(batch) for batch in batches)))


async def _call(litellm: Any, batch: list[str], model: str, dimensions: int | None, options: CallOptions) -> Any:
    extra = {"dimensions": dimensions} if dimensions is not None else {}
    try:
        return await litellm.aembedding(model=model, input=batch, timeout=options.timeout_s,
                                        api_base=options.api_base, api_key=options.api_key, **extra)
    except Exception as exc:  # litellm maps every provider error to its own types: name it, keep serving the message
        from promptops.evals.runner import describe_error
        from promptops.report.safety import environment_redactor

        redacted = environment_redactor()(describe_error(exc))
        raise EmbeddingError(f"embedding call to {model} failed: {redacted}") from None


def _vectors(response: Any, expected: int, model: str) -> list[NDArray[np.float32]]:
    """The answer's vectors in input order, checked: one per input, all of one size."""
    data = sorted(getattr(response, "data", None) or [], key=lambda item: _field(item, "index") or 0)
    rows = [_field(item, "embedding") for item in data]
    if len(rows) != expected or not all(isinstance(row, list) and row for row in rows):
        raise EmbeddingError(f"embedding call to {model} answered {len(rows)} vectors for {expected} inputs")
    if len({len(row) for row in rows}) != 1:
        raise EmbeddingError(f"embedding call to {model} answered vectors of different sizes")
    return [np.asarray(row, dtype=np.float32) for row in rows]


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _cost(catalog: ModelCatalog, model: str, response: Any, tokens: int) -> float | None:
    """Our price (litellm's map plus pricing:) for the tokens billed, else litellm's figure, else unknown."""
    priced = catalog.input_cost(model, tokens)
    if priced is not None:
        return priced
    return reported_cost(response)


def _row(key: str, model: str, vector: NDArray[np.float32], tokens: float, cost: float | None) -> CachedResult:
    encoded = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return CachedResult(key, PROMPT_ID, KIND, model, "", 0, encoded, round(tokens), None, None, cost)


def _decode(output: str | None) -> NDArray[np.float32] | None:
    """A cached vector, or None for a row that holds none (it is embedded again)."""
    if not output:
        return None
    try:
        return np.frombuffer(base64.b64decode(output, validate=True), dtype="<f4").astype(np.float32)
    except ValueError:
        return None


def _matrix(rows: list[NDArray[np.float32]], model: str) -> NDArray[np.float32]:
    sizes = {len(row) for row in rows}
    if len(sizes) > 1:
        raise EmbeddingError(f"the vectors of {model} have different sizes ({', '.join(map(str, sorted(sizes)))}): "
                             "the cache holds vectors of another size under the same address")
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    matrix = np.vstack(rows).astype(np.float32, copy=False)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1, norms)).astype(np.float32, copy=False)  # cosine becomes a dot product


def _total(costs: list[float | None]) -> float | None:
    return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
