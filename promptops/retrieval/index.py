"""The embedded index: chunks and their vectors in a folder, searched exactly.

Chosen by measurement on this project's 2-core machines (README, "Speed"):
a float32 matrix in a ``.npy`` file, memory-mapped, searched by one
matrix-vector product and a partial sort. Exact, so no recall is traded away,
nothing to build beyond writing the matrix, and nothing to install beyond
numpy. An approximate graph index (usearch's HNSW) answered faster only at
100,000 chunks, after a build of over a minute, and missed some of the true
top 8; sqlite-vec cannot load into a Python whose sqlite3 was built without
extension loading, as this one was.

A folder holds ``vectors.npy`` (one L2-normalised row per chunk, so cosine
is a dot product), ``chunks.jsonl`` (a chunk a line, in row order),
``metadata.json`` and ``metadata.npy`` (the distinct metadata, and each
row's index into it: a filter is matched once per document, not per chunk)
and ``manifest.json`` (what built it). It is written to a temporary folder and
renamed into place, so a reader never sees half an index.

A config's folders sit side by side, one per build key, so every corpus edit
leaves the last one behind. ``prune`` keeps the ``KEEP_INDEXES`` most recently
used (a folder's modification time, which ``mark_used`` sets each time a run
uses it), never the one in use, and none used within ``PRUNE_GRACE_S``: another
run may be reading it. A folder is renamed out of the way before it is
removed, so a reader finds a whole index or none (and builds it again from the
result cache, with no model call); one that has it open keeps its open files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from promptops.retrieval.chunking import Chunk
from promptops.retrieval.settings import filter_matches

if TYPE_CHECKING:
    from numpy.typing import NDArray

FORMAT = 2  # bump when the folder's layout changes: an older folder is then rebuilt, not misread
KEEP_INDEXES = 3  # index folders kept per config: the most recently used, the one in use among them
PRUNE_GRACE_S = 3600.0  # a folder used this recently is kept whatever its rank
_PRUNED = ".pruned-"  # the name a folder has between being taken out of use and being removed


class IndexFileError(Exception):
    """An index folder is missing, damaged or of another format; the message names it."""


@dataclass(frozen=True)
class Retrieved:
    chunk: Chunk
    score: float  # cosine similarity to the query; after reranking, the reranker's relevance score


class StoredChunks(Sequence[Chunk]):
    """The chunks of an index folder, each parsed from its line when first asked for: opening an index
    of 100,000 chunks reads one file, and a search parses only the chunks it returns."""

    def __init__(self, lines: list[bytes]) -> None:
        self._lines = lines
        self._parsed: dict[int, Chunk] = {}

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> Chunk: ...
    @overload
    def __getitem__(self, index: slice) -> list[Chunk]: ...

    def __getitem__(self, index: int | slice) -> Chunk | list[Chunk]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]  # negative indices, and IndexError past the end
        if index not in self._parsed:
            self._parsed[index] = Chunk(**json.loads(self._lines[index]))
        return self._parsed[index]

    def __iter__(self) -> Iterator[Chunk]:
        return (self[i] for i in range(len(self)))


class Index:
    """Chunks and their vectors (rows in chunk order, L2-normalised)."""

    def __init__(self, vectors: NDArray[np.float32], chunks: Sequence[Chunk], manifest: Mapping[str, Any] | None = None,
                 metadata: tuple[list[dict[str, Any]], NDArray[np.int32]] | None = None):
        """``metadata``: the distinct metadata of the chunks and each chunk's index into them (an index
        folder stores both; without them they are read from ``chunks``)."""
        if len(vectors) != len(chunks):
            raise ValueError(f"{len(vectors)} vectors for {len(chunks)} chunks")
        self.vectors = vectors
        self.chunks = chunks
        self.manifest = dict(manifest or {})
        self._metadata = metadata
        self._masks: dict[str, NDArray[np.bool_]] = {}  # filters (as JSON) -> the rows they keep

    @property
    def dimensions(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 and len(self.vectors) else 0

    def search(self, query: NDArray[np.float32], top_k: int, min_score: float | None = None,
               filters: Mapping[str, Any] | None = None) -> list[Retrieved]:
        """The ``top_k`` chunks most similar to ``query`` (an L2-normalised vector), best first, ties in
        chunk order; only chunks whose document passes ``filters`` and that score at least ``min_score``."""
        if not self.chunks or top_k < 1:
            return []
        if len(query) != self.dimensions:
            raise ValueError(f"the query vector has {len(query)} dimensions, the index {self.dimensions}")
        # einsum, not @: a matrix-vector product in OpenBLAS spins up threads that, on a busy 2-core machine,
        # take 16 ms where one thread takes 0.1 (10,000 x 256; README, "Speed").
        scores = np.einsum("ij,j->i", self.vectors, query.astype(np.float32, copy=False))
        if filters:
            scores = np.where(self._mask(filters), scores, -np.inf)
        count = min(top_k, len(scores))
        best = np.argpartition(-scores, count - 1)[:count] if count < len(scores) else np.arange(len(scores))
        best = best[np.lexsort((best, -scores[best]))]
        floor = -np.inf if min_score is None else min_score
        return [Retrieved(self.chunks[i], float(scores[i])) for i in best if scores[i] >= floor and scores[i] > -np.inf]

    def _mask(self, filters: Mapping[str, Any]) -> NDArray[np.bool_]:
        key = json.dumps(filters, sort_keys=True, default=str)
        if key not in self._masks:
            distinct, rows = self.metadata()
            passes = np.array([filter_matches(m, filters) for m in distinct] or [False], dtype=bool)
            self._masks[key] = passes[rows]
        return self._masks[key]

    def metadata(self) -> tuple[list[dict[str, Any]], NDArray[np.int32]]:
        """The distinct metadata of the chunks (a document's chunks share one), and each chunk's index into them."""
        if self._metadata is None:
            positions: dict[str, int] = {}
            distinct: list[dict[str, Any]] = []
            rows = np.empty(len(self.chunks), dtype=np.int32)
            for row, chunk in enumerate(self.chunks):
                key = json.dumps(chunk.metadata, sort_keys=True, default=str)
                if key not in positions:
                    positions[key] = len(distinct)
                    distinct.append(chunk.metadata)
                rows[row] = positions[key]
            self._metadata = distinct, rows
        return self._metadata

    def save(self, folder: Path) -> None:
        """Write the index to ``folder`` (replacing what is there) through a temporary folder and a rename."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            np.save(staging / "vectors.npy", np.ascontiguousarray(self.vectors, dtype="<f4"))
            distinct, rows = self.metadata()
            np.save(staging / "metadata.npy", rows)
            (staging / "metadata.json").write_text(json.dumps(distinct, ensure_ascii=False, default=str),
                                                   encoding="utf-8")
            with open(staging / "chunks.jsonl", "w", encoding="utf-8") as out:
                for chunk in self.chunks:
                    out.write(json.dumps(_fields(chunk), ensure_ascii=False, sort_keys=True, default=str) + "\n")
            manifest = {**self.manifest, "format": FORMAT, "chunks": len(self.chunks), "dimensions": self.dimensions}
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                                   encoding="utf-8")
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @classmethod
    def open(cls, folder: Path) -> Index:
        """The index in ``folder``, its vectors memory-mapped (read as searches touch them)."""
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            if manifest.get("format") != FORMAT:
                raise IndexFileError(f"{folder}: an index of format {manifest.get('format')}, not {FORMAT}: rebuild it")
            vectors = np.load(folder / "vectors.npy", mmap_mode="r")
            chunks = StoredChunks((folder / "chunks.jsonl").read_bytes().splitlines())
            metadata = (json.loads((folder / "metadata.json").read_text(encoding="utf-8")),
                        np.load(folder / "metadata.npy"))
            if len(chunks):
                chunks[0]  # a damaged file is found now, not in the middle of a run
        except (OSError, ValueError, TypeError) as exc:
            raise IndexFileError(f"{folder}: not a readable index ({exc})") from None
        distinct, rows = metadata
        if (vectors.ndim != 2 or len(vectors) != len(chunks) or len(rows) != len(chunks)
                or (len(rows) and not 0 <= int(rows.min()) <= int(rows.max()) < len(distinct))):
            raise IndexFileError(f"{folder}: {len(vectors)} vectors for {len(chunks)} chunks: rebuild it")
        return cls(vectors, chunks, manifest, metadata)


_CHUNK_FIELDS = tuple(f.name for f in fields(Chunk))


def _fields(chunk: Chunk) -> dict[str, Any]:
    """A chunk's fields as they are (dataclasses.asdict deep-copies each: a third of a 10,000-chunk save)."""
    return {name: getattr(chunk, name) for name in _CHUNK_FIELDS}


def mark_used(folder: Path) -> None:
    """Record that a run uses the index in ``folder`` now, so that ``prune`` keeps it longest."""
    with contextlib.suppress(OSError):  # a read-only checkout: ranked by when it was built
        os.utime(folder)


def prune(parent: Path, in_use: str, keep: int = KEEP_INDEXES, grace_s: float = PRUNE_GRACE_S) -> list[str]:
    """Remove the index folders in ``parent`` (one config's) beyond the ``keep`` most recently used; return
    the names removed. ``in_use`` is never removed, nor a folder used within ``grace_s`` seconds, nor
    anything that is not a folder of ``parent``'s own (a link is left alone). Leftovers of a write or a
    prune that was cut short (hidden folders) go once they are older than ``grace_s``."""
    now = time.time()
    indexes: list[tuple[float, Path]] = []
    leftovers: list[tuple[float, Path]] = []
    for entry in _folders(parent):
        try:
            used = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue  # removed meanwhile by another run
        (leftovers if entry.name.startswith(".") else indexes).append((used, entry))
    indexes.sort(key=lambda found: found[0], reverse=True)
    ranked_out = [(used, entry) for used, entry in indexes[keep:] if entry.name != in_use]
    removed = []
    for used, entry in ranked_out + leftovers:
        if now - used < grace_s:
            continue
        if _remove(entry):
            removed.append(entry.name)
    return removed


def _folders(parent: Path) -> list[Path]:
    """The real folders directly in ``parent`` (not links to folders elsewhere)."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    return [entry for entry in entries if not entry.is_symlink() and entry.is_dir()]


def _remove(folder: Path) -> bool:
    """Take ``folder`` out of use with one rename, then delete it; False when another run got there first."""
    target = folder
    if _PRUNED not in folder.name:
        target = folder.with_name(f".{folder.name}{_PRUNED}{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.rename(folder, target)
        except OSError:
            return False
    shutil.rmtree(target, ignore_errors=True)
    return True
