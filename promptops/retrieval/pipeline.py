"""The retrieval stages put together: a config's corpus built into an index, and a query answered from it.

``build_index`` reads the corpus, chunks it, and looks for an index folder
keyed by what built it (``build_key``: the embedding model and dimensions,
the chunking, and every chunk's id, text and metadata) under
``.promptops/index/<config id>/``; only when there is none does it embed (each
vector from the result cache where it is there) and write one. A CI cache of
``.promptops/index`` thus skips even the cache reads, and a cosmetic change to
the retrieval file (a comment, a description, top_k) builds nothing. Each use
marks the folder used and prunes the config's older ones (``index.prune``).

``retrieve`` embeds the query (cached too), searches ``retriever.top_k`` with
``min_score`` and ``filters``, then reranks to ``reranker.top_n`` when the
config has a reranker.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from promptops.models import ModelCatalog
from promptops.resultcache import ResultCache
from promptops.retrieval.chunking import Chunk, Tokens, chunk_documents
from promptops.retrieval.corpus import load_corpus
from promptops.retrieval.embedding import CallOptions, EmbeddingError, EmbeddingRun, embed_texts
from promptops.retrieval.index import Index, IndexFileError, Retrieved, mark_used, prune
from promptops.retrieval.rerank import RerankRun, rerank
from promptops.retrieval.settings import RetrievalSettings, known_dimensions
from promptops.retrieval.spend import Spend, spending
from promptops.retrieval.store import EMBEDDED, Searchable, StoredIndex, open_store

INDEX_FOLDER = ".promptops/index"
NOTHING_EMBEDDED = EmbeddingRun(0, 0, 0, 0, 0.0, 0.0)


class CorpusError(Exception):
    """The corpus cannot be indexed as it is; the message lists its problems (lint reports them too)."""


@dataclass(frozen=True)
class Built:
    index: Searchable  # the embedded Index, or a StoredIndex of the external store index.store names
    key: str
    folder: Path | None  # the embedded index's folder; None in an external store
    embedding: EmbeddingRun  # NOTHING_EMBEDDED when an index folder with the same key was there
    corpus_tokens: int = 0  # every chunk's tokens: what a re-index embeds
    corpus_chunks: int = 0


@dataclass(frozen=True)
class RetrievalResult:
    passages: list[Retrieved]
    embedding: EmbeddingRun  # the query's
    rerank: RerankRun | None


def build_key(settings: RetrievalSettings, chunks: list[Chunk]) -> str:
    """What an index holds, hashed: the same key, the same vectors."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"model": settings.embedding_model, "dimensions": settings.dimensions,
                              "chunking": asdict(settings.chunking)}, sort_keys=True).encode())
    for chunk in chunks:
        digest.update(json.dumps([chunk.id, chunk.text, chunk.metadata], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


async def build_index(settings: RetrievalSettings, config_folder: Path, root: Path, cache: ResultCache,
                      options: CallOptions = CallOptions(), catalog: ModelCatalog | None = None,
                      spend: Spend | None = None, index_root: Path | None = None) -> Built:
    """The config's index, from its folder under ``index_root/.promptops/index`` or built now.

    ``root`` is the project's root the corpus is read from (a ref's files copied out, in a
    pull-request check), ``index_root`` the project whose ``.promptops`` keeps indexes (default:
    ``root``). With ``spend``, the worst case of embedding every chunk is reserved first.
    """
    if settings.corpus is None:
        raise CorpusError(f"retrieval config '{settings.id}' names no corpus: add corpus.include")
    corpus = load_corpus(settings.corpus, config_folder, root)
    if corpus.problems:
        listed = "; ".join(f"{p.path or 'corpus.include'}:{p.line}: {p.message}" for p in corpus.problems[:5])
        more = f" (and {len(corpus.problems) - 5} more)" if len(corpus.problems) > 5 else ""
        raise CorpusError(f"the corpus of retrieval config '{settings.id}' has problems: {listed}{more}")
    chunks = chunk_documents(corpus.documents, settings.chunking,
                             Tokens(settings.embedding_model, settings.chunking.unit))
    key = build_key(settings, chunks)
    tokens = priced_tokens(settings, chunks)
    if settings.store is not None and settings.store.store != EMBEDDED:
        return await _build_in_store(settings, chunks, key, index_root or root, cache, options, catalog, spend)
    folder = (index_root or root) / INDEX_FOLDER / settings.id / key
    if (folder / "manifest.json").is_file():
        try:
            built = Built(Index.open(folder), key, folder, NOTHING_EMBEDDED, tokens, len(chunks))
            _used(folder, index_root or root)
            return built
        except IndexFileError:
            pass  # damaged or of an older format: built again below
    vectors, run = await _spending(spend, embedding_cost(settings.embedding_model, tokens, catalog),
                                   f"embedding the corpus of '{settings.id}' ({tokens:,} tokens)",
                                   embed_texts([c.text for c in chunks], settings.embedding_model,
                                               settings.dimensions, cache, options, catalog))
    _check_dimensions(settings, vectors.shape[1] if len(chunks) else None)
    index = Index(vectors, chunks, {"config": settings.id, "embedding_model": settings.embedding_model,
                                    "chunking": asdict(settings.chunking), "key": key})
    index.save(folder)
    built = Built(Index.open(folder), key, folder, run, tokens, len(chunks))
    _used(folder, index_root or root)
    return built


def _used(folder: Path, root: Path) -> None:
    """Mark the index folder used and prune its config's older ones (every corpus edit leaves one behind).

    Only inside the project's index folder: a config id is a folder name there, never a path out of it."""
    mark_used(folder)
    indexes = (root / INDEX_FOLDER).resolve()
    parent = folder.parent.resolve()
    if parent.parent == indexes:
        prune(parent, folder.name)


def embedding_cost(model: str, tokens: int, catalog: ModelCatalog | None = None) -> float | None:
    """What embedding ``tokens`` tokens with ``model`` costs at the price map's (and pricing:'s) input price."""
    return (catalog or ModelCatalog()).input_cost(model, tokens)


async def _spending(spend: Spend | None, worst: float | None, what: str,
                    work: Coroutine[Any, Any, tuple[Any, EmbeddingRun]]) -> tuple[Any, EmbeddingRun]:
    """Run ``work`` (an embedding) with its worst case reserved against the spend cap, then settle what it cost."""
    return await spending(spend, worst, what, work, lambda result: result[1].cost_usd)


async def _build_in_store(settings: RetrievalSettings, chunks: list[Chunk], key: str, root: Path, cache: ResultCache,
                          options: CallOptions, catalog: ModelCatalog | None, spend: Spend | None) -> Built:
    """The index ``key`` in the external store index.store names, found there or embedded and upserted now."""
    assert settings.store is not None
    store = open_store(settings.store, settings.id, root)
    tokens = priced_tokens(settings, chunks)
    if any(held.key == key for held in store.holds()):
        return Built(StoredIndex(store, key), key, None, NOTHING_EMBEDDED, tokens, len(chunks))
    vectors, run = await _spending(spend, embedding_cost(settings.embedding_model, tokens, catalog),
                                   f"embedding the corpus of '{settings.id}' ({tokens:,} tokens)",
                                   embed_texts([c.text for c in chunks], settings.embedding_model,
                                               settings.dimensions, cache, options, catalog))
    _check_dimensions(settings, vectors.shape[1] if len(chunks) else None)
    store.upsert(key, chunks, vectors)
    return Built(StoredIndex(store, key), key, None, run, tokens, len(chunks))


def priced_tokens(settings: RetrievalSettings, chunks: list[Chunk]) -> int:
    """The chunks' size in the embedding model's tokens, which its price is per: chunking may count characters."""
    if settings.chunking.unit != "characters":
        return sum(chunk.tokens for chunk in chunks)
    tokens = Tokens(settings.embedding_model, "tokens")
    return sum(tokens.count(chunk.text) for chunk in chunks)


async def retrieve(query: str, index: Searchable, settings: RetrievalSettings, cache: ResultCache,
                   options: CallOptions = CallOptions(), catalog: ModelCatalog | None = None,
                   spend: Spend | None = None) -> RetrievalResult:
    """The passages the config gives a query: searched, then reranked when it has a reranker."""
    tokens = Tokens(settings.embedding_model, "tokens").count(query)  # priced per token, whatever chunking counts
    vectors, run = await _spending(spend, embedding_cost(settings.embedding_model, tokens, catalog),
                                   f"embedding a query with {settings.embedding_model}",
                                   embed_texts([query], settings.embedding_model, settings.dimensions, cache,
                                               options, catalog))
    found = index.search(vectors[0], settings.top_k, settings.min_score, settings.filters)
    if settings.reranker_model is None:
        return RetrievalResult(found, run, None)
    top_n = settings.reranker_top_n or settings.top_k
    reranked, rerank_run = await rerank(query, found, settings.reranker_model, top_n, cache, options, catalog, spend)
    return RetrievalResult(reranked, run, rerank_run)


def _check_dimensions(settings: RetrievalSettings, answered: int | None) -> None:
    expected = known_dimensions(settings.embedding_model, settings.dimensions)
    if answered is not None and expected is not None and answered != expected:
        source = "embedding.dimensions" if settings.dimensions else "litellm's price map"
        raise EmbeddingError(f"{settings.embedding_model} answered vectors of {answered} dimensions; "
                             f"{source} says {expected}")
