"""A Chroma server as a ``VectorStore`` (``index.store: chroma``; ``pip install 'promptops[chroma]'``).

Each index is a collection named ``<index name>-<build key>``, in cosine
space, marked with ``promptops_index``, ``promptops_key`` and, once every
chunk is in, ``promptops_complete``: a build stopped half way is not taken for
an index. A chunk is stored with its text, its fields as JSON
(``promptops_chunk``), its row (``promptops_row``: ties keep chunk order, as
in the embedded index) and each metadata field as an array (``meta.<field>``),
so ``retriever.filters`` run on the server with ``$contains``, with
``filter_matches``'s meaning: a list on either side matches when the two share
a value, and true is not 1. A field whose value is neither a scalar nor a list
of scalars of one type cannot be filtered on in Chroma; it stays in the chunk.

Chroma searches an HNSW graph: approximate, though exact on small collections
(tests/retrieval/test_retrieval_store.py compares it with the embedded index).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from promptops.retrieval.chunking import Chunk
from promptops.retrieval.index import Retrieved
from promptops.retrieval.store import Held, StoreError, StoreSpec

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

DEFAULT_URL = "http://localhost:8000"
META_PREFIX = "meta."
_SCALARS = (str, int, float, bool)
_CHUNK_FIELDS = tuple(f.name for f in fields(Chunk))


class ChromaStore:
    def __init__(self, client: Any, index_name: str, where: str) -> None:
        self._client, self._name, self._where = client, index_name, where

    @classmethod
    def open(cls, spec: StoreSpec, config_id: str, root: Path) -> ChromaStore:
        import chromadb  # the optional extra; imported only when a config names this store

        url = spec.resolved_url or DEFAULT_URL
        parts = urlsplit(url)
        try:
            client = chromadb.HttpClient(host=parts.hostname or "localhost", port=parts.port or 8000,
                                         ssl=parts.scheme == "https")
        except Exception as exc:  # chromadb raises ValueError, ConnectionError... when the server is not there
            raise StoreError(f"retrieval config '{config_id}': no Chroma server answers at {url} ({exc})") from None
        return cls(client, spec.name, url)

    def holds(self) -> list[Held]:
        held = []
        for collection in self._call("list the collections", self._client.list_collections):
            marks = collection.metadata or {}
            if marks.get("promptops_index") == self._name and marks.get("promptops_complete"):
                held.append(Held(str(marks["promptops_key"]), collection.count()))
        return sorted(held, key=lambda h: h.key)

    def upsert(self, key: str, chunks: Sequence[Chunk], vectors: NDArray[np.float32]) -> None:
        marks = {"promptops_index": self._name, "promptops_key": key}
        collection = self._call("create a collection", self._client.get_or_create_collection,
                                self._collection_name(key), metadata=marks,
                                configuration={"hnsw": {"space": "cosine"}})
        first_row = collection.count()
        batch = self._client.get_max_batch_size()
        for start in range(0, len(chunks), batch):
            part = chunks[start:start + batch]
            self._call("store chunks", collection.upsert, ids=[c.id for c in part],
                       embeddings=[[float(x) for x in row] for row in vectors[start:start + batch]],
                       documents=[c.text for c in part],
                       metadatas=[_metadata(c, first_row + start + i) for i, c in enumerate(part)])
        self._call("mark the index complete", collection.modify, metadata={**marks, "promptops_complete": True})

    def search(self, key: str, query: NDArray[np.float32], top_k: int, min_score: float | None = None,
               filters: Mapping[str, Any] | None = None) -> list[Retrieved]:
        collection = self._call("open the index", self._client.get_collection, self._collection_name(key))
        count = collection.count()
        if top_k < 1 or not count:
            return []
        answer = self._call("search", collection.query, query_embeddings=[[float(x) for x in query]],
                            n_results=min(top_k, count), where=_where(filters or {}),
                            include=["distances", "metadatas"])
        found = [(1.0 - float(distance), meta)
                 for distance, meta in zip(answer["distances"][0], answer["metadatas"][0])]
        found.sort(key=lambda hit: (-hit[0], hit[1]["promptops_row"]))
        floor = float("-inf") if min_score is None else min_score
        return [Retrieved(Chunk(**json.loads(meta["promptops_chunk"])), score)
                for score, meta in found if score >= floor]

    def drop(self, key: str) -> None:
        name = self._collection_name(key)
        if any(c.name == name for c in self._call("list the collections", self._client.list_collections)):
            self._call("drop an index", self._client.delete_collection, name)

    def _collection_name(self, key: str) -> str:
        # Chroma allows 3-512 characters of [a-zA-Z0-9._-], starting and ending with a letter or digit.
        return f"{re.sub(r'[^A-Za-z0-9._-]', '-', self._name).strip('._-') or 'index'}-{key}"

    def _call(self, doing: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as exc:  # chromadb's errors have no common base: name the server and keep its message
            raise StoreError(f"Chroma at {self._where} could not {doing}: {exc}") from None


def _metadata(chunk: Chunk, row: int) -> dict[str, Any]:
    stored: dict[str, Any] = {"promptops_row": row, "promptops_chunk": json.dumps(
        {name: getattr(chunk, name) for name in _CHUNK_FIELDS}, ensure_ascii=False, default=str)}
    for name, value in chunk.metadata.items():
        values = value if isinstance(value, list) else [value]
        if values and all(isinstance(v, _SCALARS) for v in values) and len({type(v) for v in values}) == 1:
            stored[META_PREFIX + name] = values
    return stored


def _where(filters: Mapping[str, Any]) -> dict[str, Any] | None:
    """``retriever.filters`` as a Chroma ``where``: every field must share a value with the chunk's."""
    clauses = []
    for name, wanted in filters.items():
        options = [{META_PREFIX + name: {"$contains": w}} for w in (wanted if isinstance(wanted, list) else [wanted])]
        if not options:  # an empty list shares a value with nothing
            options = [{"promptops_row": {"$lt": 0}}]
        clauses.append(options[0] if len(options) == 1 else {"$or": options})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
