"""The retrieval pipeline through the real litellm code path against the stub server: a corpus built into an
index (embedded in batches, every vector cached), searched with top_k, min_score and filters, and reranked."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from promptops.estimate.tokens import TokenCounter
from promptops.evals.runner import SpendBudget
from promptops.models import ModelCatalog
from promptops.resultcache import ResultCache
from promptops.retrieval.chunking import Chunk
from promptops.retrieval.embedding import CallOptions, EmbeddingError, embed_texts, vector_key
from promptops.retrieval.index import KEEP_INDEXES, Index, IndexFileError, prune
from promptops.retrieval.pipeline import NOTHING_EMBEDDED, CorpusError, build_index, retrieve
from promptops.retrieval.settings import ChunkingSpec, CorpusSpec, RetrievalSettings
from promptops.retrieval.spend import SpendCapError
from promptops.testing import StubServer, embed

EMBEDDING = "openai/text-embedding-3-small"
DOCS = {
    "kb/refunds.md": "---\nproduct: billing\n---\n# Refunds\n\nRefunds are accepted within 30 days of purchase.\n",
    "kb/shipping.md": "---\nproduct: logistics\n---\n# Shipping\n\nStandard shipping takes five business days.\n",
    "kb/passwords.md": "---\nproduct: accounts\n---\n# Passwords\n\nReset your password from the login page.\n",
    "kb/faq.jsonl": '{"id": "invoice", "text": "Invoices are emailed after each purchase.", "product": "billing"}\n',
}


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    with StubServer(embedding_dim=64) as server:
        yield server


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    for name, text in DOCS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def settings(**changes: object) -> RetrievalSettings:
    base = dict(id="kb", embedding_model=EMBEDDING, dimensions=64, chunking=ChunkingSpec(64, 8, "markdown"),
                top_k=3, corpus=CorpusSpec(("kb/*.md", "kb/*.jsonl")))
    return RetrievalSettings(**{**base, **changes})  # type: ignore[arg-type]


def options(stub: StubServer, **changes: object) -> CallOptions:
    return CallOptions(**{"api_base": stub.base_url, "api_key": "stub", **changes})  # type: ignore[arg-type]


def embedded_inputs(stub: StubServer) -> list[str]:
    return [text for body in stub.requests if "input" in body for text in body["input"]]


def test_build_embeds_in_batches_and_a_rebuild_makes_no_call(stub: StubServer, project: Path) -> None:
    stub.reset()
    with ResultCache(project / ".promptops/cache.db") as cache:
        built = asyncio.run(build_index(settings(), project, project, cache, options(stub, batch_size=2)))
        assert [r["model"] for r in stub.requests] == ["text-embedding-3-small"] * 2  # 4 chunks, 2 a batch
        assert all(r["dimensions"] == 64 and len(r["input"]) == 2 for r in stub.requests)
        assert built.embedding.calls == 2 and built.embedding.cached == 0 and built.embedding.tokens > 0
        assert built.embedding.cost_usd == pytest.approx(built.embedding.tokens * 2e-08)  # the price map's price
        assert built.index.dimensions == 64 and len(built.index.chunks) == 4
        # the vectors are the stub's, normalised, in chunk order
        first = built.index.chunks[0]
        assert np.allclose(built.index.vectors[0], embed(first.text, 64), atol=1e-6)
        assert built.folder == project / ".promptops/index/kb" / built.key

        again = asyncio.run(build_index(settings(top_k=1, min_score=0.5), project, project, cache, options(stub)))
        assert again.key == built.key and again.embedding is NOTHING_EMBEDDED and stub.calls == 2

        stub.reset()
        for item in built.folder.iterdir():  # the index lost (no CI cache): every vector comes from the result cache
            item.unlink()
        built.folder.rmdir()
        from_cache = asyncio.run(build_index(settings(), project, project, cache, options(stub)))
        assert stub.calls == 0 and from_cache.embedding.cached == 4 and from_cache.embedding.calls == 0
        assert np.array_equal(np.asarray(from_cache.index.vectors), np.asarray(built.index.vectors))


def test_a_changed_document_embeds_only_its_chunks(stub: StubServer, project: Path) -> None:
    with ResultCache(project / ".promptops/cache.db") as cache:
        asyncio.run(build_index(settings(), project, project, cache, options(stub)))
        (project / "kb/shipping.md").write_text("# Shipping\n\nExpress shipping takes two days.\n", encoding="utf-8")
        stub.reset()
        rebuilt = asyncio.run(build_index(settings(), project, project, cache, options(stub)))
    assert embedded_inputs(stub) == ["# Shipping\n\nExpress shipping takes two days."]
    assert rebuilt.embedding.cached == 3 and rebuilt.embedding.calls == 1


def test_a_chunking_change_is_a_new_index(stub: StubServer, project: Path) -> None:
    with ResultCache(project / ".promptops/cache.db") as cache:
        first = asyncio.run(build_index(settings(), project, project, cache, options(stub)))
        other = asyncio.run(build_index(settings(chunking=ChunkingSpec(4, 0, "fixed")), project, project, cache,
                                        options(stub)))
    assert other.key != first.key and len(other.index.chunks) > len(first.index.chunks)
    assert sorted(p.name for p in (project / ".promptops/index/kb").iterdir()) == sorted([first.key, other.key])


def test_search_ranks_by_shared_words_with_top_k_min_score_and_filters(stub: StubServer, project: Path) -> None:
    with ResultCache(project / ".promptops/cache.db") as cache:
        built = asyncio.run(build_index(settings(), project, project, cache, options(stub))).index

        def ask(question: str, **changes: object) -> list[str]:
            answer = asyncio.run(retrieve(question, built, settings(**changes), cache, options(stub)))
            return [p.chunk.document_id for p in answer.passages]

        assert ask("how many days are refunds accepted after purchase")[0] == "kb/refunds.md"
        assert ask("reset my password from the login page", top_k=1) == ["kb/passwords.md"]
        assert ask("when are invoices emailed", top_k=5)[0] == "kb/faq.jsonl#invoice"
        assert sorted(ask("purchase", filters={"product": "billing"}, top_k=5)) == ["kb/faq.jsonl#invoice",
                                                                                    "kb/refunds.md"]
        assert ask("purchase", filters={"product": "nothing"}) == []
        assert ask("zebra quantum", min_score=0.5) == []


def test_rerank_through_litellm_keeps_top_n_and_is_cached(stub: StubServer, project: Path) -> None:
    reranked_settings = settings(top_k=4, reranker_model="cohere/rerank-v3.5", reranker_top_n=2)
    with ResultCache(project / ".promptops/cache.db") as cache:
        built = asyncio.run(build_index(reranked_settings, project, project, cache, options(stub))).index
        stub.reset()
        answer = asyncio.run(retrieve("refunds purchase days", built, reranked_settings, cache, options(stub)))
        assert [body.get("top_n") for body in stub.requests if "query" in body] == [2]
        assert len(answer.passages) == 2 and answer.rerank is not None and answer.rerank.calls == 1
        assert answer.passages[0].chunk.document_id == "kb/refunds.md" and answer.passages[0].score == 1.0
        assert answer.rerank.cost_usd == pytest.approx(0.002)
        stub.reset()
        again = asyncio.run(retrieve("refunds purchase days", built, reranked_settings, cache, options(stub)))
    assert stub.calls == 0 and again.passages == answer.passages and again.rerank.calls == 0
    # Nothing spent on a cached answer, and what the query costs in production all the same.
    assert (again.rerank.cost_usd, again.rerank.query_cost_usd) == (0.0, pytest.approx(0.002))


def test_a_rerank_is_priced_per_query_by_pricing_whatever_litellm_reports(stub: StubServer, project: Path) -> None:
    reranked_settings = settings(top_k=4, reranker_model="cohere/rerank-v3.5", reranker_top_n=2)
    house = ModelCatalog({"cohere/rerank-v3.5": {"per_query": 0.05}})
    with ResultCache(project / ".promptops/cache.db") as cache:
        built = asyncio.run(build_index(reranked_settings, project, project, cache, options(stub), house)).index
        budget = SpendBudget(None)
        answer = asyncio.run(retrieve("refunds purchase days", built, reranked_settings, cache, options(stub), house,
                                      budget))
    assert answer.rerank is not None and answer.rerank.calls == 1
    assert answer.rerank.cost_usd == answer.rerank.query_cost_usd == pytest.approx(0.05)
    assert budget.spent == pytest.approx(0.05 + (answer.embedding.cost_usd or 0.0)) and budget.reserved == 0.0


def test_a_rerank_that_could_pass_the_spend_cap_is_not_sent(stub: StubServer, project: Path) -> None:
    reranked_settings = settings(top_k=4, reranker_model="cohere/rerank-v3.5", reranker_top_n=2)
    with ResultCache(project / ".promptops/cache.db") as cache:
        built = asyncio.run(build_index(reranked_settings, project, project, cache, options(stub))).index
        stub.reset()
        budget = SpendBudget(0.001)  # the query's embedding fits, the rerank's $0.002 does not
        with pytest.raises(SpendCapError) as caught:
            asyncio.run(retrieve("refunds purchase days", built, reranked_settings, cache, options(stub),
                                 spend=budget))
    assert [body for body in stub.requests if "query" in body] == []
    assert str(caught.value) == ("not run: reranking a query with cohere/rerank-v3.5 could pass the spend cap "
                                 "(raise eval.max_cost_usd or --max-cost)")
    assert budget.reserved == 0.0 and budget.spent < 0.001


def test_vectors_of_another_size_than_the_model_has_are_refused(stub: StubServer, project: Path) -> None:
    with ResultCache(project / ".promptops/cache.db") as cache, pytest.raises(EmbeddingError) as caught:
        asyncio.run(build_index(settings(dimensions=None), project, project, cache, options(stub)))
    assert str(caught.value) == ("openai/text-embedding-3-small answered vectors of 64 dimensions; "
                                 "litellm's price map says 1536")


def test_a_failed_embedding_call_names_the_model(stub: StubServer, project: Path) -> None:
    stub.reset(faults=["500", "500", "500"])
    try:
        with ResultCache(project / ".promptops/cache.db") as cache, pytest.raises(EmbeddingError) as caught:
            asyncio.run(embed_texts(["a text"], EMBEDDING, 64, cache, options(stub)))
    finally:
        stub.reset(faults=())  # reset() alone keeps the faults for the next test on this worker's stub
    assert str(caught.value).startswith("embedding call to openai/text-embedding-3-small failed: InternalServerError")


def test_a_corpus_with_problems_is_not_indexed(stub: StubServer, project: Path) -> None:
    stub.reset()
    (project / "kb/broken.jsonl").write_text("{not json\n", encoding="utf-8")
    with ResultCache(project / ".promptops/cache.db") as cache, pytest.raises(CorpusError) as caught:
        asyncio.run(build_index(settings(), project, project, cache, options(stub)))
    assert "kb/broken.jsonl:1: invalid JSON" in str(caught.value) and stub.calls == 0


def test_cached_vectors_are_addressed_by_model_dimensions_and_text() -> None:
    keys = {vector_key(EMBEDDING, 64, "a"), vector_key(EMBEDDING, 32, "a"), vector_key(EMBEDDING, None, "a"),
            vector_key("openai/text-embedding-3-large", 64, "a"), vector_key(EMBEDDING, 64, "b")}
    assert len(keys) == 5 and vector_key(EMBEDDING, 64, "a") == vector_key(EMBEDDING, 64, "a")


def chunk(i: int, **metadata: object) -> Chunk:
    return Chunk(f"d{i}@0", f"d{i}", f"d{i}.md", f"text {i}", 2, dict(metadata))


def test_the_index_folder_round_trips_and_ties_keep_chunk_order(tmp_path: Path) -> None:
    vectors = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], dtype=np.float32)
    index = Index(vectors, [chunk(0, lang="en"), chunk(1, lang="fr"), chunk(2, lang="fr"), chunk(3)])
    index.save(tmp_path / "idx")
    opened = Index.open(tmp_path / "idx")
    assert isinstance(opened.vectors, np.memmap) and list(opened.chunks) == index.chunks
    query = np.array([1, 0], dtype=np.float32)
    assert [(r.chunk.id, round(r.score, 3)) for r in opened.search(query, 3)] == [("d0@0", 1.0), ("d2@0", 1.0),
                                                                                   ("d3@0", 0.6)]
    assert [r.chunk.id for r in opened.search(query, 5, filters={"lang": "fr"})] == ["d2@0", "d1@0"]
    assert [r.chunk.id for r in opened.search(query, 5, min_score=0.7)] == ["d0@0", "d2@0"]
    manifest = json.loads((tmp_path / "idx/manifest.json").read_text())
    assert manifest["chunks"] == 4 and manifest["dimensions"] == 2 and manifest["format"] == 2
    with pytest.raises(ValueError, match="the query vector has 3 dimensions, the index 2"):
        opened.search(np.ones(3, dtype=np.float32), 1)


@pytest.mark.parametrize("damage, message", [
    ('{"id": "only one"}\n', "idx: not a readable index"),
    ('{"id": "d0@0", "document_id": "d0", "path": "d0.md", "text": "", "tokens": 1, "metadata": {}}\n',
     "idx: 2 vectors for 1 chunks: rebuild it"),
])
def test_a_damaged_index_folder_is_named(tmp_path: Path, damage: str, message: str) -> None:
    Index(np.eye(2, dtype=np.float32), [chunk(0), chunk(1)]).save(tmp_path / "idx")
    (tmp_path / "idx/chunks.jsonl").write_text(damage, encoding="utf-8")
    with pytest.raises(IndexFileError, match=message):
        Index.open(tmp_path / "idx")


# -- index folders: every corpus edit leaves one; the older ones are pruned ---------------------------

def aged(folder: Path, hours: float) -> None:
    """Make ``folder`` look last used ``hours`` ago."""
    then = time.time() - hours * 3600
    os.utime(folder, (then, then))


def saved(parent: Path, name: str, hours: float) -> Path:
    Index(np.eye(2, dtype=np.float32), [chunk(0), chunk(1)]).save(parent / name)
    aged(parent / name, hours)
    return parent / name


def test_prune_keeps_the_most_recently_used_the_one_in_use_and_the_recent(tmp_path: Path) -> None:
    parent = tmp_path / ".promptops/index/kb"
    for name, hours in [("a", 9), ("b", 8), ("c", 7), ("d", 6), ("e", 5), ("f", 0.5)]:
        saved(parent, name, hours)
    outside = saved(tmp_path, "elsewhere", 10)
    (parent / "link").symlink_to(outside, target_is_directory=True)  # an old link: left alone, its target too
    aged(parent / "link", 10)
    (parent / "notes.txt").write_text("not an index")
    staging = parent / ".g.abc123"  # a save cut short two hours ago
    staging.mkdir()
    aged(staging, 2)
    writing = parent / ".h.def456"  # a save under way
    writing.mkdir()

    removed = prune(parent, in_use="a", keep=2, grace_s=3600)

    # kept: f and e (the two most recent), a (in use); d, c, b are past the grace period and ranked out
    assert sorted(removed) == [".g.abc123", "b", "c", "d"]
    assert sorted(p.name for p in parent.iterdir()) == [".h.def456", "a", "e", "f", "link", "notes.txt"]
    assert (outside / "manifest.json").is_file() and (parent / "link").is_symlink()
    assert prune(parent, in_use="a", keep=2, grace_s=3600) == []  # nothing more to do
    # Within the grace period a folder stays whatever its rank: another run may be reading it.
    assert prune(parent, in_use="f", keep=1, grace_s=10 * 3600) == []


def test_an_index_open_elsewhere_keeps_answering_after_it_is_pruned(tmp_path: Path) -> None:
    parent = tmp_path / "kb"
    reader = Index.open(saved(parent, "old", 5))  # memory-mapped, as another run holds it
    saved(parent, "new", 0)
    assert prune(parent, in_use="new", keep=1, grace_s=0) == ["old"]
    assert [p.name for p in parent.iterdir()] == ["new"]
    assert [r.chunk.id for r in reader.search(np.array([0, 1], dtype=np.float32), 1)] == ["d1@0"]


def test_each_corpus_edit_leaves_a_folder_and_build_index_prunes_the_old_ones(stub: StubServer, project: Path) -> None:
    parent = project / ".promptops/index/kb"
    keys = []
    with ResultCache(project / ".promptops/cache.db") as cache:
        for edit in range(KEEP_INDEXES + 3):
            (project / "kb/shipping.md").write_text(f"# Shipping\n\nShipping takes {edit + 2} days.\n")
            built = asyncio.run(build_index(settings(), project, project, cache, options(stub)))
            keys.append(built.key)
            for folder in parent.iterdir():
                if folder.name != built.key:
                    aged(folder, 2 + len(keys) - keys.index(folder.name))  # the older, the longer unused
        assert len(set(keys)) == len(keys)
        assert sorted(p.name for p in parent.iterdir()) == sorted(keys[-KEEP_INDEXES:])
        # Using an old index marks it used: a prune keeps it over newer ones not used since.
        (project / "kb/shipping.md").write_text(f"# Shipping\n\nShipping takes {KEEP_INDEXES + 2} days.\n")
        reused = asyncio.run(build_index(settings(), project, project, cache, options(stub)))
    assert reused.key == keys[-3] and reused.embedding is NOTHING_EMBEDDED
    assert time.time() - (parent / keys[-3]).stat().st_mtime < 600
    aged(parent / keys[-1], 1)  # built an hour ago, unused since; keys[-2] unused for longer
    assert prune(parent, in_use=keys[-1], keep=1, grace_s=0) == [keys[-2]]


def test_a_corpus_chunked_in_characters_is_priced_in_the_embedding_models_tokens(
        stub: StubServer, project: Path) -> None:
    """The re-index cost and the spend cap's reservation count tokens: characters would overstate them ~4x."""
    stub.reset()
    in_characters = settings(chunking=ChunkingSpec(400, 0, "recursive", "characters"))
    with ResultCache(project / ".promptops/cache.db") as cache:
        built = asyncio.run(build_index(in_characters, project, project, cache, options(stub)))
        assert isinstance(built.index, Index)
        texts = [chunk.text for chunk in built.index.chunks]
    characters = sum(len(text) for text in texts)
    assert built.corpus_tokens == sum(TokenCounter().count_text(EMBEDDING, text) for text in texts)
    assert built.corpus_tokens < characters / 2
