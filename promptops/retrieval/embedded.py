"""The embedded index as a ``VectorStore``: one folder per build key under ``.promptops/index/<config id>/``.

The pipeline writes these folders itself (``build_index``); this adapter lets
the same contract (and its tests) cover them, and drops a stale folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from promptops.retrieval.index import Index, IndexFileError, Retrieved
from promptops.retrieval.pipeline import INDEX_FOLDER
from promptops.retrieval.store import Held, StoreSpec

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from promptops.retrieval.chunking import Chunk


class EmbeddedStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._open: dict[str, Index] = {}

    @classmethod
    def open(cls, spec: StoreSpec, config_id: str, root: Path) -> EmbeddedStore:
        return cls(root / INDEX_FOLDER / config_id)

    def holds(self) -> list[Held]:
        found = []
        for folder in sorted(self.folder.glob("*/manifest.json")):
            try:
                found.append(Held(folder.parent.name, len(self._index(folder.parent.name).chunks)))
            except IndexFileError:
                continue  # damaged or of an older format: the pipeline builds it again
        return found

    def upsert(self, key: str, chunks: Sequence[Chunk], vectors: NDArray[np.float32]) -> None:
        merged: dict[str, tuple[Chunk, NDArray[np.float32]]] = {}
        if (self.folder / key / "manifest.json").is_file():
            held = self._index(key)
            merged.update((c.id, (c, np.asarray(v))) for c, v in zip(held.chunks, held.vectors))
        merged.update((c.id, (c, v)) for c, v in zip(chunks, vectors))
        rows = list(merged.values())
        matrix = np.vstack([v for _, v in rows]).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
        self._open.pop(key, None)
        Index(matrix, [c for c, _ in rows], {"key": key}).save(self.folder / key)

    def search(self, key: str, query: NDArray[np.float32], top_k: int, min_score: float | None = None,
               filters: Mapping[str, Any] | None = None) -> list[Retrieved]:
        return self._index(key).search(query, top_k, min_score, filters)

    def drop(self, key: str) -> None:
        self._open.pop(key, None)
        shutil.rmtree(self.folder / key, ignore_errors=True)

    def _index(self, key: str) -> Index:
        if key not in self._open:
            self._open[key] = Index.open(self.folder / key)
        return self._open[key]
