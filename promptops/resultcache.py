"""The eval result cache: one SQLite file, one row per model call, written as results arrive.

A row is addressed by the content of the call (model, messages, params and
the repeat index), so a re-run with nothing changed finds every answer, a
prompt change misses only the calls it changed, and base-side results are
shared by every pull request against the same base. Results are committed as
they arrive, in batches, by a writer thread (``PendingWrites``): what arrives
while it commits goes in its next transaction, none waits for more, and an
answer counts only once committed, so a run killed half-way repeats no
finished call. WAL mode lets several
processes (parallel jobs, the eval's worker processes) write at once.

A cache that cannot be written (a full disk, a read-only file or folder, a
database another process keeps locked) raises ``CacheError``, naming the file:
an answer is counted only once it is stored, so a run stops rather than pay for
answers it cannot keep.

It lives below the stages, not in ``evals/``: evals writes it and the cost
estimate reads it too (the output tokens a model actually produced for a
prompt, where any were observed), so neither stage imports the other for it.
It imports nothing of promptops.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptops.errors import UsageError

if TYPE_CHECKING:  # the cost estimate reads this module too, on the commit path, and needs no event loop
    import asyncio
import contextlib

# Parameters that change how a call is made, not what it answers: not part of the address.
_TRANSPORT_PARAMS = frozenset({"timeout_s", "timeout", "api_base", "api_key", "num_retries", "max_retries"})

DEFAULT_PATH = ".promptops/cache.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,          -- content address: model, messages, params, repeat index
    prompt_id TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    model TEXT NOT NULL,
    case_id TEXT NOT NULL,
    repeat INTEGER NOT NULL,
    output TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    latency_ms REAL,
    cost_usd REAL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_prompt ON results (prompt_id, model, prompt_version);
"""


class CacheError(UsageError):
    """The result cache cannot be opened, read or written; the message names the file and why."""


@dataclass(frozen=True)
class CachedResult:
    key: str
    prompt_id: str
    prompt_version: str
    model: str
    case_id: str
    repeat: int
    output: str | None
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float | None
    cost_usd: float | None


def call_key(model: str, messages: list[dict[str, str]], params: dict[str, Any], repeat: int) -> str:
    """The content address of one model call."""
    answer_params = {k: v for k, v in sorted(params.items()) if k not in _TRANSPORT_PARAMS}
    payload = json.dumps({"model": model, "messages": messages, "params": answer_params, "repeat": repeat},
                         sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ResultCache:
    """Read and append results; safe to share between processes (one connection per instance)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection = connect(path)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, key: str) -> CachedResult | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: list[str]) -> dict[str, CachedResult]:
        found: dict[str, CachedResult] = {}
        try:
            for start in range(0, len(keys), 500):  # SQLite limits the number of bound parameters
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in self._connection.execute(f"SELECT {_COLUMNS} FROM results WHERE key IN ({marks})", chunk):
                    found[row[0]] = CachedResult(*row)
        except sqlite3.Error as exc:
            raise CacheError(f"cannot read the result cache {self.path}: {exc}") from None
        return found

    def merge_from(self, other: Path) -> int:
        """Copy in another cache's results (a shard's); existing rows win. Returns how many were new."""
        if not other.is_file():
            raise FileNotFoundError(f"{other}: no such cache")
        before = self._connection.total_changes
        self._connection.execute("ATTACH DATABASE ? AS other", (str(other),))
        try:
            with self._connection:
                self._connection.execute(f"INSERT OR IGNORE INTO results ({_COLUMNS}, created_at) "
                                         f"SELECT {_COLUMNS}, created_at FROM other.results")
        finally:
            self._connection.execute("DETACH DATABASE other")
        return self._connection.total_changes - before

    def put(self, result: CachedResult) -> None:
        """Store one result and commit at once: what has arrived survives a crash or Ctrl-C."""
        self.put_many([result])

    def put_many(self, results: list[CachedResult]) -> None:
        """Store results in one transaction, committed before this returns; CacheError if they cannot be."""
        _insert(self._connection, self.path, results)

    def writer(self) -> WriteConnection:
        """A connection of its own for a writer thread, with this one's busy timeout."""
        timeout_ms = self._connection.execute("PRAGMA busy_timeout").fetchone()[0]
        return WriteConnection(self.path, timeout_ms)


def _insert(connection: sqlite3.Connection, path: Path, results: list[CachedResult]) -> None:
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        with connection:
            connection.executemany(
                f"INSERT OR REPLACE INTO results ({_COLUMNS}, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(*_values(result), created) for result in results],
            )
    except sqlite3.Error as exc:  # disk full, read-only, locked by another process for the whole timeout
        raise CacheError(f"cannot write the result cache {path}: {exc}") from None


class PendingWrites:
    """Results to store, committed in batches by a writer thread: the event loop never waits on SQLite.

    ``store`` queues a row and returns at once; the writer takes every row queued since its last
    commit and commits them in one transaction (while it commits, the next batch gathers), then
    tells their waiters on their event loop. None waits for a later answer, so a kill loses no
    more than a commit per row would. Whoever stores a result awaits its commit, so nothing counts
    an answer as kept before it is; a commit that fails raises CacheError in each of them, and
    every later store fails at once (the cache is not retried behind their backs). ``flush``
    commits what is left and stops the writer (on shutdown).

    The writer has its own connection (with the cache's busy timeout): another process holding
    the file's write lock delays only the writer, never the calls.
    """

    def __init__(self, cache: ResultCache) -> None:
        self.cache = cache
        self.commits = 0  # transactions so far: rows / commits is the batch size
        self._queue: list[tuple[CachedResult, asyncio.Future[None]]] = []
        self._ready = threading.Condition()
        self._stopping = False
        self._failure: CacheError | None = None
        self._thread: threading.Thread | None = None

    def store(self, result: CachedResult) -> asyncio.Future[None]:
        """Add ``result``; the future is done once it is committed, or fails with CacheError."""
        import asyncio

        stored = asyncio.get_running_loop().create_future()
        with self._ready:
            if self._failure is not None:
                stored.set_exception(self._failure)
                return stored
            if self._thread is None:
                try:
                    connection = self.cache.writer()
                except CacheError as exc:
                    self._failure = exc
                    stored.set_exception(exc)
                    return stored
                self._thread = threading.Thread(target=self._write, args=(connection,),
                                                name="promptops-cache-writer", daemon=True)
                self._thread.start()
            self._queue.append((result, stored))
            self._ready.notify()
        return stored

    def flush(self) -> None:
        """Commit what is left and stop the writer; raises CacheError if a commit failed."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        if self._failure is not None:
            raise self._failure

    def _write(self, connection: WriteConnection) -> None:
        try:
            while True:
                with self._ready:
                    while not self._queue and not self._stopping:
                        self._ready.wait()
                    batch, self._queue = self._queue, []
                    if not batch:
                        return
                failure = None
                try:
                    connection.put_many([result for result, _ in batch])
                    self.commits += 1
                except CacheError as exc:
                    with self._ready:
                        failure = self._failure = exc
                _tell([stored for _, stored in batch], failure)
                if failure is not None:
                    return
        finally:
            connection.close()
            with self._ready:  # rows queued after a failure: they hear of it
                late, self._queue = self._queue, []
            _tell([stored for _, stored in late], self._failure)


def _tell(waiting: list[asyncio.Future[None]], failure: CacheError | None) -> None:
    """Resolve each future on its own event loop (from the writer thread)."""
    for stored in waiting:
        with contextlib.suppress(RuntimeError):  # its loop has closed: nobody is waiting any more
            stored.get_loop().call_soon_threadsafe(_resolve, stored, failure)


def _resolve(stored: asyncio.Future[None], failure: CacheError | None) -> None:
    if stored.done():  # its waiter was cancelled (a run being stopped): the row is stored all the same
        return
    if failure is None:
        stored.set_result(None)
    else:
        stored.set_exception(failure)


class WriteConnection:
    """A second connection to a cache, for the writer thread (SQLite connections stay in one thread)."""

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self.path = path
        self._connection = connect(path, check_same_thread=False)  # made here, used only by the writer
        self._connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")

    def put_many(self, results: list[CachedResult]) -> None:
        _insert(self._connection, self.path, results)

    def close(self) -> None:
        self._connection.close()


_COLUMNS = ("key, prompt_id, prompt_version, model, case_id, repeat, output, input_tokens, output_tokens, "
            "latency_ms, cost_usd")


def _values(result: CachedResult) -> tuple[Any, ...]:
    return (result.key, result.prompt_id, result.prompt_version, result.model, result.case_id, result.repeat,
            result.output, result.input_tokens, result.output_tokens, result.latency_ms, result.cost_usd)


@dataclass(frozen=True)
class ObservedOutput:
    mean_tokens: float
    calls: int
    same_version: bool  # False: observed on another version of the prompt with the same model


def cache_path(root: Path, configured: str | None) -> Path:
    return root / (configured or DEFAULT_PATH)


def connect(path: Path, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (creating if needed) the cache; WAL lets concurrent writers and readers share it.

    Raises CacheError, naming the file, when it cannot be created, opened or set up.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the folder of the result cache {path}: {exc.strerror or exc}") from None
    try:
        connection = sqlite3.connect(path, timeout=30, check_same_thread=check_same_thread)
    except sqlite3.Error as exc:
        raise CacheError(f"cannot open the result cache {path}: {exc}") from None
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # durable at each commit in WAL mode, without an fsync per row
        connection.executescript(SCHEMA)
    except sqlite3.Error as exc:
        connection.close()
        raise CacheError(f"cannot use the result cache {path}: {exc}") from None
    return connection


def observed_output_tokens(path: Path, prompt_id: str, model: str, version: str) -> ObservedOutput | None:
    """Mean output tokens seen for this prompt and model: this version's calls if any, else any version's."""
    if not path.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as connection:
            for same_version, clause, args in (
                (True, "AND prompt_version = ?", (prompt_id, model, version)),
                (False, "", (prompt_id, model)),
            ):
                row = connection.execute(
                    "SELECT AVG(output_tokens), COUNT(output_tokens) FROM results "
                    f"WHERE prompt_id = ? AND model = ? {clause} AND output_tokens IS NOT NULL",
                    args,
                ).fetchone()
                if row and row[1]:
                    return ObservedOutput(float(row[0]), int(row[1]), same_version)
    except sqlite3.Error:
        return None  # an unreadable cache means nothing was observed, not a failed estimate
    return None
