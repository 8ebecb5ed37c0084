"""The eval result cache: content addresses, results that survive a kill, concurrent writers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from promptops.resultcache import CachedResult, CacheError, PendingWrites, ResultCache, call_key, observed_output_tokens

MESSAGES = [{"role": "user", "content": "Capital of France?"}]


def result(key: str, case_id: str = "c1", output_tokens: int = 3) -> CachedResult:
    return CachedResult(key, "geo.capital", "v1", "openai/gpt-4o-mini", case_id, 0, "Paris", 5, output_tokens,
                        120.0, 0.00001)


def test_key_is_content_addressed() -> None:
    base = call_key("openai/gpt-4o-mini", MESSAGES, {"temperature": 0, "max_tokens": 5}, 0)
    assert base == call_key("openai/gpt-4o-mini", MESSAGES, {"max_tokens": 5, "temperature": 0}, 0)
    assert base == call_key("openai/gpt-4o-mini", MESSAGES, {"temperature": 0, "max_tokens": 5, "timeout_s": 9}, 0)
    assert base != call_key("openai/gpt-4o", MESSAGES, {"temperature": 0, "max_tokens": 5}, 0)
    assert base != call_key("openai/gpt-4o-mini", MESSAGES, {"temperature": 0.1, "max_tokens": 5}, 0)
    assert base != call_key("openai/gpt-4o-mini", MESSAGES, {"temperature": 0, "max_tokens": 5}, 1)
    other = [{"role": "user", "content": "Capital of Italy?"}]
    assert base != call_key("openai/gpt-4o-mini", other, {"temperature": 0, "max_tokens": 5}, 0)


def test_put_get_and_observed_output(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    with ResultCache(path) as cache:
        for i, tokens in enumerate((2, 4)):
            cache.put(result(f"k{i}", f"c{i}", tokens))
        assert cache.get("k0") == result("k0", "c0", 2)
        assert cache.get("nope") is None
        assert set(cache.get_many([f"k{i}" for i in range(700)])) == {"k0", "k1"}
    observed = observed_output_tokens(path, "geo.capital", "openai/gpt-4o-mini", "v1")
    assert observed is not None and observed.mean_tokens == 3 and observed.calls == 2 and observed.same_version
    assert observed_output_tokens(path, "geo.capital", "openai/gpt-4o-mini", "v2").same_version is False
    assert observed_output_tokens(tmp_path / "missing.db", "geo.capital", "openai/gpt-4o-mini", "v1") is None


def _writer(path: str, worker: int, count: int) -> None:
    with ResultCache(Path(path)) as cache:
        for i in range(count):
            cache.put(result(f"w{worker}-{i}", f"c{i}"))


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "cache.db")
    ResultCache(Path(path)).close()
    processes = [multiprocessing.get_context("spawn").Process(target=_writer, args=(path, w, 150)) for w in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 600


def _write_then_die(path: str) -> None:
    with ResultCache(Path(path)) as cache:
        for i in range(20):
            cache.put(result(f"k{i}", f"c{i}"))
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no close: a crash mid-run


def test_results_survive_a_killed_run(tmp_path: Path) -> None:
    path = str(tmp_path / "cache.db")
    process = multiprocessing.get_context("spawn").Process(target=_write_then_die, args=(path,))
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL
    with ResultCache(Path(path)) as cache:
        assert len(cache.get_many([f"k{i}" for i in range(20)])) == 20


def _store_in_batches_then_die(path: str) -> None:
    import asyncio

    async def store_all(writes: PendingWrites) -> None:
        await asyncio.gather(*(writes.store(result(f"b{i}", f"c{i}")) for i in range(300)))

    with ResultCache(Path(path)) as cache:
        asyncio.run(store_all(PendingWrites(cache)))  # every answer heard of as stored...
        os.kill(os.getpid(), signal.SIGKILL)  # ...then a crash: the writer thread never flushed nor closed


def test_answers_the_batch_writer_confirmed_survive_a_killed_run(tmp_path: Path) -> None:
    path = str(tmp_path / "cache.db")
    process = multiprocessing.get_context("spawn").Process(target=_store_in_batches_then_die, args=(path,))
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL
    with ResultCache(Path(path)) as cache:
        assert len(cache.get_many([f"b{i}" for i in range(300)])) == 300


def test_a_cache_that_cannot_be_opened_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    with pytest.raises(CacheError, match=f"cannot create the folder of the result cache {tmp_path}/a-file/cache.db"):
        ResultCache(tmp_path / "a-file" / "cache.db")
    (tmp_path / "garbage.db").write_bytes(b"not SQLite at all, " * 100)
    with pytest.raises(CacheError, match=f"cannot use the result cache {tmp_path}/garbage.db: file is not a database"):
        ResultCache(tmp_path / "garbage.db")
