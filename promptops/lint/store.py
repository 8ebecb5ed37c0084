"""PO310: the store a retrieval config's index names, checked against the adapters promptops has."""

from __future__ import annotations

from collections.abc import Iterator

from promptops.lint.project import LintProject
from promptops.lint.registry import Hit, hit, rule
from promptops.retrieval.store import ADAPTERS, EMBEDDED
from promptops.specs import RetrievalSpec


@rule("PO310", "unknown-index-store", "retrieval")
def unknown_index_store(spec: RetrievalSpec, project: LintProject) -> Iterator[Hit]:
    """`index.store` names a vector store promptops has no adapter for, so an
    eval that retrieves with this config stops before it embeds anything.
    Leave `store` out (or say `embedded`) for the index under
    .promptops/index/, which needs no server; `chroma` uses a Chroma server
    (`pip install 'promptops[chroma]'`). README's "Index stores" says what an
    adapter for another store (pgvector, Qdrant, OpenSearch) must do.

    Fails:   index: {name: support-kb-v3, store: pgvector}
    Passes:  index: {name: support-kb-v3, store: chroma, url: http://localhost:8000}
    """
    store = (spec.raw.get("index") or {}).get("store")
    if isinstance(store, str) and store not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS))
        yield hit(spec.source, ("index", "store"), f"index.store '{store}' has no adapter in promptops "
                  f"(it has: {known}; leave store out for the {EMBEDDED} index)")
