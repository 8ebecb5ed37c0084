"""The contract every index store keeps, and the stores promptops has.

A store holds indexes, each keyed by what built it (the pipeline's
``build_key``: embedding model and dimensions, chunking, every chunk's id,
text and metadata), so base and head of a pull request can each have theirs
side by side and an unchanged corpus finds its index again. The embedded
index (``index.store`` unset or ``embedded``: folders under
``.promptops/index/``) keeps the contract, and so does each external adapter
(``chroma``). An adapter for another server (pgvector, Qdrant, OpenSearch...)
implements ``VectorStore`` and is named in ``ADAPTERS``; README's retrieval
section says what each method must do.

Light on purpose: lint reads ``ADAPTERS`` on the commit path, so numpy, the
index and every store's client are imported only when a store is opened.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from promptops.errors import ServiceError, UsageError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from promptops.retrieval.chunking import Chunk
    from promptops.retrieval.index import Retrieved

EMBEDDED = "embedded"
# index.store -> "module:class" of its adapter; "extra" is what `pip install -e '.[extra]'` brings for it.
ADAPTERS: dict[str, tuple[str, str | None]] = {
    EMBEDDED: ("promptops.retrieval.embedded:EmbeddedStore", None),
    "chroma": ("promptops.retrieval.chroma:ChromaStore", "chroma"),
}


class StoreError(ServiceError):
    """A store's server did not answer, or refused; the message names the server and what it said."""


class StoreUnavailable(UsageError):
    """``index.store`` names a store promptops has no adapter for, or whose extra is not installed."""


@dataclass(frozen=True)
class Held:
    """One index a store holds."""

    key: str
    chunks: int


class VectorStore(Protocol):
    """Where an index's chunks and vectors live, one index per build key, all under one index name."""

    def holds(self) -> list[Held]:
        """The indexes the store has under this index name, complete ones only."""
        ...

    def upsert(self, key: str, chunks: Sequence[Chunk], vectors: NDArray[np.float32]) -> None:
        """Add the chunks (one L2-normalised row each, in order) to the index ``key``, replacing any chunk of the
        same id; the index appears in ``holds`` once its chunks are all there."""
        ...

    def search(self, key: str, query: NDArray[np.float32], top_k: int, min_score: float | None = None,
               filters: Mapping[str, Any] | None = None) -> list[Retrieved]:
        """As ``Index.search``: the ``top_k`` chunks by cosine similarity, best first, ties in chunk order, those
        whose metadata passes ``filters`` (``settings.filter_matches``) and scoring at least ``min_score``."""
        ...

    def drop(self, key: str) -> None:
        """Remove the index ``key`` (a stale one); nothing happens when there is none."""
        ...


class Searchable(Protocol):
    """What ``retrieve`` searches: an embedded ``Index`` or a ``StoredIndex``."""

    def search(self, query: NDArray[np.float32], top_k: int, min_score: float | None = None,
               filters: Mapping[str, Any] | None = None) -> list[Retrieved]: ...


class StoredIndex:
    """One index of a store, searched as an ``Index`` is: what the pipeline hands ``retrieve``."""

    def __init__(self, store: VectorStore, key: str) -> None:
        self.store, self.key = store, key

    def search(self, query: NDArray[np.float32], top_k: int, min_score: float | None = None,
               filters: Mapping[str, Any] | None = None) -> list[Retrieved]:
        return self.store.search(self.key, query, top_k, min_score, filters)


@dataclass(frozen=True)
class StoreSpec:
    """``index:`` of a retrieval config: the index's name, its store and where the store's server answers."""

    name: str
    store: str = EMBEDDED
    url: str | None = None  # "$VAR" and "${VAR}" are read from the environment (a URL may carry a token)

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any] | None, config_id: str) -> StoreSpec:
        raw = raw or {}
        return cls(str(raw.get("name") or config_id), str(raw.get("store") or EMBEDDED), raw.get("url"))

    @property
    def resolved_url(self) -> str | None:
        return os.path.expandvars(self.url) if self.url else None


def open_store(spec: StoreSpec, config_id: str, root: Path) -> VectorStore:
    """The store ``index.store`` names, for the index ``spec.name`` (the embedded one under ``root``)."""
    if spec.store not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS))
        raise StoreUnavailable(f"retrieval config '{config_id}': index.store '{spec.store}' has no adapter "
                         f"(promptops has: {known}; README, 'Index stores', says how to add one)")
    target, extra = ADAPTERS[spec.store]
    module_name, class_name = target.split(":")
    try:  # the adapter imports its client when it opens: a missing extra shows here
        opened: VectorStore = getattr(importlib.import_module(module_name), class_name).open(spec, config_id, root)
    except ImportError as exc:
        hint = f": pip install 'promptops[{extra}]'" if extra else ""
        raise StoreUnavailable(f"retrieval config '{config_id}': index.store '{spec.store}' "
                               f"needs {exc.name}{hint}") from None
    return opened
