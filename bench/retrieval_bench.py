"""Retrieval speed against the project's stub server. Prints figures, is not a test.

    python bench/retrieval_bench.py [--chunks 10000] [--batch-sizes 16,64,256] [--concurrency 4]
                                    [--dimensions 256] [--search 10000,100000] [--queries 200]

Prints (issue 14, item 7):
- embedding ``--chunks`` distinct chunks through ``embed_texts`` (litellm's
  ``aembedding``) against the stub, served from a child process so that its
  hashing does not share this process's interpreter lock, at each batch size
  into a fresh cache: calls, calls per second, chunks per second; and a
  control, the last batch size posted by httpx alone (the stub's share);
- the same chunks again from the cache (no call may be made; target under
  2 s for 10,000 chunks): ``embed_texts`` alone, then the whole
  ``build_index`` of a corpus holding them (read, chunk, vectors from the
  cache, write the index), then ``build_index`` again with its index folder
  there (no cache read either);
- search latency per query on the embedded index at each ``--search`` size
  (random unit vectors: an exact search costs the same whatever they hold),
  opened memory-mapped from its folder: median and p95 over ``--queries``
  queries, top_k 8, with and without a metadata filter (its mask is built by
  the first filtered query, whose time is given apart), after one search
  that reads the mapped file in.

litellm's import and first call are made before anything is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from promptops.resultcache import ResultCache
from promptops.retrieval.chunking import Chunk
from promptops.retrieval.embedding import CallOptions, embed_texts
from promptops.retrieval.index import Index
from promptops.retrieval.pipeline import build_index
from promptops.retrieval.settings import ChunkingSpec, CorpusSpec, RetrievalSettings

MODEL = "openai/text-embedding-3-small"
WORDS = ("refund order invoice shipping password account billing card label return delivery express "
         "support receipt payment plan upgrade cancel trial team seat export report login email").split()


def chunk_texts(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct texts of 60 words (about 75 tokens), numbered so that none repeats."""
    rng = random.Random(seed)
    return [f"Chunk {i}: " + " ".join(rng.choice(WORDS) for _ in range(60)) + "." for i in range(count)]


def start_stub() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-m", "promptops.testing", "--quiet"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def embedding_rows(texts: list[str], base_url: str, batch_sizes: list[int], concurrency: int, dimensions: int,
                   folder: Path) -> Path:
    """Embed ``texts`` at each batch size into a fresh cache; return the last cache, for the cached re-run."""
    with ResultCache(folder / "warm-up.db") as cache:  # litellm's import and first call are not what is measured
        asyncio.run(embed_texts(["warm up"], MODEL, dimensions, cache, CallOptions(api_base=base_url, api_key="stub")))
    cache_path = folder / "none.db"
    for batch_size in batch_sizes:
        cache_path = folder / f"cache-{batch_size}.db"
        options = CallOptions(batch_size=batch_size, concurrency=concurrency, api_base=base_url, api_key="stub")
        with ResultCache(cache_path) as cache:
            _, run = asyncio.run(embed_texts(texts, MODEL, dimensions, cache, options))
        print(f"embed {len(texts):,} chunks, batch {batch_size:>4}, concurrency {concurrency}: {run.calls:>4} calls "
              f"in {run.seconds:6.2f} s = {run.calls / run.seconds:7.1f} calls/s, "
              f"{len(texts) / run.seconds:8.0f} chunks/s", flush=True)
    return cache_path


def control(texts: list[str], base_url: str, batch_size: int, concurrency: int, dimensions: int) -> None:
    """The same batches posted by httpx alone, as the openai SDK asks for them (base64): the stub's share."""
    import httpx

    async def post_all() -> float:
        limit = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            async def one(batch: list[str]) -> None:
                async with limit:
                    answer = await client.post("/embeddings", json={"model": "text-embedding-3-small", "input": batch,
                                                                    "dimensions": dimensions,
                                                                    "encoding_format": "base64"})
                    answer.raise_for_status()
            started = time.perf_counter()
            await asyncio.gather(*(one(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)))
            return time.perf_counter() - started

    seconds = asyncio.run(post_all())
    calls = -(-len(texts) // batch_size)
    print(f"control, httpx alone, batch {batch_size:>4}: {calls:>4} calls in {seconds:6.2f} s = "
          f"{calls / seconds:7.1f} calls/s, {len(texts) / seconds:8.0f} chunks/s", flush=True)


def cached_rerun(texts: list[str], cache_path: Path, dimensions: int) -> None:
    with ResultCache(cache_path) as cache:
        started = time.perf_counter()
        matrix, run = asyncio.run(embed_texts(texts, MODEL, dimensions, cache,
                                              CallOptions(api_base="http://127.0.0.1:9/unused", api_key="stub")))
        seconds = time.perf_counter() - started
    assert run.calls == 0 and run.cached == len(texts), run
    print(f"re-run from the cache: {len(texts):,} vectors {matrix.shape} in {seconds:.2f} s, 0 calls "
          f"(target < 2 s)", flush=True)


def rebuild_from_cache(texts: list[str], cache_path: Path, dimensions: int, folder: Path) -> None:
    """build_index on a corpus of ``texts`` (a JSONL line each, one chunk each) whose vectors are all in the
    cache: the whole re-run (read, chunk, vectors from the cache, write the index); then again with the index
    folder there."""
    project = folder / "project"
    (project / "kb").mkdir(parents=True)
    (project / "kb/chunks.jsonl").write_text("".join(f'{{"id": {i}, "text": "{t}"}}\n' for i, t in enumerate(texts)))
    settings = RetrievalSettings("bench", MODEL, dimensions, ChunkingSpec(512, 0, "recursive"), 8,
                                 corpus=CorpusSpec(("kb/chunks.jsonl",)))
    options = CallOptions(api_base="http://127.0.0.1:9/unused", api_key="stub")
    with ResultCache(cache_path) as cache:
        started = time.perf_counter()
        first = asyncio.run(build_index(settings, project, project, cache, options))
        built_s = time.perf_counter() - started
        started = time.perf_counter()
        again = asyncio.run(build_index(settings, project, project, cache, options))
        again_s = time.perf_counter() - started
    assert first.embedding.calls == 0 and first.embedding.cached == len(texts) and again.key == first.key
    print(f"build_index from the cache, {len(texts):,} chunks of a JSONL corpus: {built_s:.2f} s, 0 calls "
          f"(target < 2 s); again with its index folder there: {again_s:.2f} s", flush=True)


def search_latency(size: int, dimensions: int, queries: int, folder: Path) -> None:
    rng = np.random.default_rng(size)
    vectors = rng.standard_normal((size, dimensions), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [Chunk(f"d{i}@0", f"d{i}", f"d{i}.md", "", 1, {"lang": "en" if i % 4 else "fr"}) for i in range(size)]
    Index(vectors, chunks).save(folder / f"index-{size}")
    started = time.perf_counter()
    index = Index.open(folder / f"index-{size}")
    open_ms = (time.perf_counter() - started) * 1000
    asked = rng.standard_normal((queries, dimensions), dtype=np.float32)
    asked /= np.linalg.norm(asked, axis=1, keepdims=True)
    index.search(asked[0], 8)  # the first search reads the mapped file in
    plain, plain_cpu = _timed([lambda q=q: index.search(q, 8) for q in asked])
    first_filtered = _timed([lambda: index.search(asked[0], 8, filters={"lang": "fr"})])[0][0]
    filtered, filtered_cpu = _timed([lambda q=q: index.search(q, 8, filters={"lang": "fr"}) for q in asked])
    print(f"search, {size:>7,} chunks x {dimensions} dims (open {open_ms:.0f} ms): top 8 median "
          f"{np.median(plain):.2f} ms (CPU {np.median(plain_cpu):.2f} ms), p95 {np.percentile(plain, 95):.2f} ms; "
          f"with a filter median {np.median(filtered):.2f} ms (CPU {np.median(filtered_cpu):.2f} ms), p95 "
          f"{np.percentile(filtered, 95):.2f} ms (its mask, once: {first_filtered:.0f} ms)", flush=True)


def _timed(calls: list) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of each call (CPU: this process's, all threads; less disturbed by other load)."""
    wall, cpu = [], []
    for call in calls:
        started, started_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--batch-sizes", default="16,64,256")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--dimensions", type=int, default=256)
    parser.add_argument("--search", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    texts = chunk_texts(args.chunks)
    with tempfile.TemporaryDirectory(prefix="retrieval-bench-") as tmp:
        folder = Path(tmp)
        stub, base_url = start_stub()
        try:
            cache_path = embedding_rows(texts, base_url, [int(b) for b in args.batch_sizes.split(",")],
                                        args.concurrency, args.dimensions, folder)
            control(texts, base_url, int(args.batch_sizes.split(",")[-1]), args.concurrency, args.dimensions)
            cached_rerun(texts, cache_path, args.dimensions)
            rebuild_from_cache(texts, cache_path, args.dimensions, folder)
        finally:
            stub.terminate()
            stub.wait(timeout=10)
        for size in (int(s) for s in args.search.split(",")):
            search_latency(size, args.dimensions, args.queries, folder)


if __name__ == "__main__":
    main()
