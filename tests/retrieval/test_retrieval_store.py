"""The index-store contract: the embedded index and the Chroma adapter, the latter against a real Chroma server.

The server (`chroma run`, from the `chroma` extra) is started once for the session on a free loopback port
with an empty folder, and stopped when the session ends, whether its tests passed or not.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from promptops.errors import ExitCode
from promptops.resultcache import ResultCache
from promptops.retrieval.chunking import Chunk
from promptops.retrieval.embedded import EmbeddedStore
from promptops.retrieval.index import Index
from promptops.retrieval.pipeline import NOTHING_EMBEDDED, build_index, retrieve
from promptops.retrieval.settings import ChunkingSpec, CorpusSpec, RetrievalSettings
from promptops.retrieval.store import (
    StoreError,
    StoreSpec,
    StoreUnavailable,
    VectorStore,
    open_store,
)
from promptops.testing import StubServer

NO_CHROMA = importlib.util.find_spec("chromadb") is None
needs_chroma = pytest.mark.skipif(NO_CHROMA, reason="the chroma extra is not installed: pip install -e '.[chroma]'")
SERVER_START_S = 60

DIMENSIONS = 24
FILTERS = [None, {"locale": "en-US"}, {"tags": ["billing", "refunds"]}, {"flag": True}, {"flag": 1},
           {"locale": "de-DE", "tags": "shipping"}, {"tags": []}, {"missing": "x"}]


def corpus(count: int = 240) -> tuple[list[Chunk], np.ndarray]:
    """Chunks with every kind of metadata a filter meets (scalars, lists, true next to 1), and random unit
    vectors (no two scores tie, so both stores must agree on the order itself)."""
    rng = np.random.default_rng(14)
    tags = [["billing"], ["refunds", "billing"], ["shipping"], []]
    chunks = []
    for i in range(count):
        metadata: dict[str, object] = {"locale": ["en-US", "de-DE", "fr-FR"][i % 3], "tags": tags[i % 4]}
        if i % 5 == 0:
            metadata["flag"] = True if i % 10 == 0 else 1
        chunks.append(Chunk(f"doc{i // 4}@{i % 4}", f"doc{i // 4}", f"kb/doc{i // 4}.md", f"text {i}", 3, metadata))
    vectors = rng.normal(size=(count, DIMENSIONS)).astype(np.float32)
    return chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if NO_CHROMA:
        pytest.skip("the chroma extra is not installed: pip install -e '.[chroma]'")
    port, folder = free_port(), tmp_path_factory.mktemp("chroma")
    chroma = Path(sys.executable).parent / "chroma"
    with open(folder / "server.log", "wb") as log:
        server = subprocess.Popen([str(chroma), "run", "--path", str(folder / "data"), "--host", "127.0.0.1",
                                   "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + SERVER_START_S
            while True:
                try:
                    urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("Chroma did not start: "
                                           f"{(folder / 'server.log').read_text(errors='replace')}") from None
                    time.sleep(0.2)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture()
def chroma(chroma_url: str, request: pytest.FixtureRequest) -> VectorStore:
    # an index name per test: tests share the server, not their indexes
    return open_store(StoreSpec(f"kb-{request.node.name[:40]}", "chroma", chroma_url), "kb", Path("."))


@needs_chroma
def test_chroma_answers_as_the_embedded_index_does(chroma: VectorStore, tmp_path: Path) -> None:
    chunks, vectors = corpus()
    embedded = Index(vectors, chunks)
    chroma.upsert("k1", chunks, vectors)
    queries = np.random.default_rng(3).normal(size=(6, DIMENSIONS)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    compared = 0
    for query in queries:
        for filters in FILTERS:
            for top_k, min_score in ((8, None), (20, 0.1), (1, None), (300, None)):
                want = embedded.search(query, top_k, min_score, filters)
                got = chroma.search("k1", query, top_k, min_score, filters)
                assert [r.chunk.id for r in got] == [r.chunk.id for r in want], (filters, top_k, min_score)
                assert [r.score for r in got] == pytest.approx([r.score for r in want], abs=1e-5)
                assert [r.chunk for r in got] == [r.chunk for r in want]  # text, path, tokens, metadata back whole
                compared += len(want)
    assert compared > 1000  # the filters left something to compare


@needs_chroma
def test_chroma_holds_indexes_by_build_key_and_drops_a_stale_one(chroma: VectorStore) -> None:
    chunks, vectors = corpus(40)
    assert chroma.holds() == []
    chroma.upsert("old", chunks[:10], vectors[:10])
    chroma.upsert("new", chunks, vectors)
    chroma.upsert("new", chunks[:5], vectors[:5])  # the same ids again: replaced, not added
    assert [(h.key, h.chunks) for h in chroma.holds()] == [("new", 40), ("old", 10)]
    chroma.drop("old")
    chroma.drop("never-built")
    assert [h.key for h in chroma.holds()] == ["new"]


@needs_chroma
def test_the_pipeline_builds_into_chroma_once_and_retrieves_from_it(chroma_url: str, tmp_path: Path) -> None:
    """Through litellm's embedding API against the stub, into the real server; a rebuild embeds nothing."""
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb/refunds.md").write_text("---\nproduct: billing\n---\n# Refunds\n\nRefunds take 30 days.\n")
    (tmp_path / "kb/shipping.md").write_text("---\nproduct: logistics\n---\n# Shipping\n\nShipping takes a week.\n")
    settings = RetrievalSettings("kb", "openai/text-embedding-3-small", 32, ChunkingSpec(64, 8, "markdown"), top_k=2,
                                 corpus=CorpusSpec(("kb/*.md",)), store=StoreSpec("kb-pipeline", "chroma", chroma_url))
    with StubServer(embedding_dim=32) as stub, ResultCache(tmp_path / ".promptops/cache.db") as cache:
        from promptops.retrieval.embedding import CallOptions

        options = CallOptions(api_base=stub.base_url, api_key="stub")
        built = asyncio.run(build_index(settings, tmp_path, tmp_path, cache, options))
        assert built.folder is None and built.embedding.calls == 1 and not (tmp_path / ".promptops/index").exists()
        stub.reset()
        again = asyncio.run(build_index(settings, tmp_path, tmp_path, cache, options))
        assert again.key == built.key and again.embedding is NOTHING_EMBEDDED and stub.calls == 0
        answer = asyncio.run(retrieve("how many days do refunds take", again.index, settings, cache, options))
        assert answer.passages[0].chunk.document_id == "kb/refunds.md"
        billing = RetrievalSettings(**{**settings.__dict__, "filters": {"product": "logistics"}})
        answer = asyncio.run(retrieve("how many days do refunds take", again.index, billing, cache, options))
        assert [p.chunk.document_id for p in answer.passages] == ["kb/shipping.md"]


@needs_chroma
def test_a_chroma_server_that_is_not_there_is_named() -> None:
    spec = StoreSpec("kb", "chroma", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreError, match=r"no Chroma server answers at http://127\.0\.0\.1:\d+") as raised:
        open_store(spec, "kb", Path("."))
    assert raised.value.exit_code == ExitCode.SERVICE


def test_the_embedded_store_keeps_the_contract(tmp_path: Path) -> None:
    chunks, vectors = corpus(40)
    store = open_store(StoreSpec("kb"), "kb", tmp_path)
    assert isinstance(store, EmbeddedStore) and store.holds() == []
    store.upsert("old", chunks[:10], vectors[:10])
    store.upsert("new", chunks[:30], vectors[:30])
    store.upsert("new", chunks[25:], vectors[25:])  # 5 replaced, 10 added
    assert [(h.key, h.chunks) for h in store.holds()] == [("new", 40), ("old", 10)]
    query = vectors[7]
    assert [r.chunk.id for r in store.search("new", query, 3, None, {"locale": "de-DE"})] == \
        [r.chunk.id for r in Index(vectors, chunks).search(query, 3, None, {"locale": "de-DE"})]
    store.drop("old")
    assert [h.key for h in store.holds()] == ["new"] and not (tmp_path / ".promptops/index/kb/old").exists()


def test_a_store_with_no_adapter_is_a_usage_error_naming_the_config(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="retrieval config 'kb': index.store 'pgvector' has no adapter "
                                               r"\(promptops has: chroma, embedded") as raised:
        open_store(StoreSpec("kb", "pgvector"), "kb", tmp_path)
    assert raised.value.exit_code == ExitCode.USAGE


@pytest.mark.skipif(not NO_CHROMA, reason="the chroma extra is installed: this checks the message without it")
def test_a_missing_extra_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match=r"needs chromadb: pip install 'promptops\[chroma\]'"):
        open_store(StoreSpec("kb", "chroma"), "kb", tmp_path)


def test_the_index_url_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KB_CHROMA", "http://chroma.internal:9000")
    assert StoreSpec("kb", "chroma", "${KB_CHROMA}").resolved_url == "http://chroma.internal:9000"
    assert StoreSpec.from_raw({"name": "kb-v3", "store": "chroma"}, "kb") == StoreSpec("kb-v3", "chroma", None)
    assert StoreSpec.from_raw(None, "kb") == StoreSpec("kb", "embedded", None)
