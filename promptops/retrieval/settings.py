"""A retrieval config's sections as typed objects, read from its validated ``raw`` mapping.

Light on purpose (no numpy, no litellm): lint reads them on the commit path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptops.pricing import price_map
from promptops.retrieval.store import StoreSpec
from promptops.specs import RetrievalSpec

DEFAULT_TEXT_FIELD = "text"
DEFAULT_ID_FIELD = "id"
STRATEGIES = ("fixed", "recursive", "sentence", "markdown")  # "semantic" is in the schema, not run yet


@dataclass(frozen=True)
class CorpusSpec:
    """``corpus:``: globs of repository files, relative to the retrieval config's folder."""

    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    text_field: str = DEFAULT_TEXT_FIELD  # JSONL: the field that holds a document's text
    id_field: str = DEFAULT_ID_FIELD  # JSONL: the field that holds a document's id

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any] | None) -> CorpusSpec | None:
        if not raw:
            return None
        return cls(tuple(raw.get("include") or ()), tuple(raw.get("exclude") or ()),
                   raw.get("text_field", DEFAULT_TEXT_FIELD), raw.get("id_field", DEFAULT_ID_FIELD))


@dataclass(frozen=True)
class ChunkingSpec:
    size: int
    overlap: int = 0
    strategy: str = "recursive"
    unit: str = "tokens"


@dataclass(frozen=True)
class RetrievalSettings:
    """What the pipeline needs of a retrieval config."""

    id: str
    embedding_model: str
    dimensions: int | None
    chunking: ChunkingSpec
    top_k: int
    min_score: float | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)
    reranker_model: str | None = None
    reranker_top_n: int | None = None
    corpus: CorpusSpec | None = None
    store: StoreSpec | None = None  # index: its name and store (None: the embedded index, named by the config id)

    @classmethod
    def from_spec(cls, spec: RetrievalSpec) -> RetrievalSettings:
        raw = spec.raw
        chunking = raw.get("chunking") or {}
        retriever = raw.get("retriever") or {}
        return cls(
            id=spec.id,
            embedding_model=spec.embedding_model,
            dimensions=(raw.get("embedding") or {}).get("dimensions"),
            chunking=ChunkingSpec(spec.chunk_size, spec.chunk_overlap, chunking.get("strategy", "recursive"),
                                  spec.chunk_unit),
            top_k=spec.top_k,
            min_score=retriever.get("min_score"),
            filters=dict(retriever.get("filters") or {}),
            reranker_model=spec.reranker_model,
            reranker_top_n=spec.reranker_top_n,
            corpus=CorpusSpec.from_raw(raw.get("corpus")),
            store=StoreSpec.from_raw(raw["index"], spec.id) if raw.get("index") else None,
        )


def filter_matches(metadata: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    """Whether a document's metadata passes ``retriever.filters``.

    Each filter field must match: a list on either side matches when the two
    share a value (``{tags: [billing, refunds]}`` passes a document tagged
    ``refunds``), else the values must be equal. A document without the field
    does not match.
    """
    for name, wanted in filters.items():
        if name not in metadata:
            return False
        have = metadata[name]
        wanted_values = wanted if isinstance(wanted, list) else [wanted]
        have_values = have if isinstance(have, list) else [have]
        if not any(_same(w, h) for w in wanted_values for h in have_values):
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    """Equal values, where true is not 1 (YAML's ``yes`` is no count)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def known_dimensions(model: str, configured: int | None) -> int | None:
    """The vector size of an embedding model: ``embedding.dimensions``, else litellm's price map
    (``output_vector_size``), else None."""
    if configured is not None:
        return configured
    for key in (model, model.split("/", 1)[-1]):
        size = (price_map().entry(key) or {}).get("output_vector_size")
        if isinstance(size, int):
            return size
    return None
