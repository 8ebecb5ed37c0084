"""The eval result cache: one SQLite file, one row per model call, written as results arrive.

A row is addressed by the content of the call (model, messages, params and
the repeat index), so a re-run with nothing changed finds every answer, a
prompt change misses only the calls it changed, and base-side results are
shared by every pull request against the same base. Results are committed as
they arrive: those that arrive in the same turn of the event loop go in one
transaction at the end of that turn (``PendingWrites``), without waiting for
more, so a run killed half-way repeats no finished call. WAL mode lets several
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
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptops.errors import UsageError

if TYPE_CHECKING:  # the cost estimate reads this module too, on the commit path, and needs no event loop
    import asyncio

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
        created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            with self._connection:
                self._connection.executemany(
                    f"INSERT OR REPLACE INTO results ({_COLUMNS}, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(*_values(result), created) for result in results],
                )
        except sqlite3.Error as exc:  # disk full, read-only, locked by another process for the whole timeout
            raise CacheError(f"cannot write the result cache {self.path}: {exc}") from None


class PendingWrites:
    """Results to store, committed together at the end of the event loop's current turn.

    Answers that arrive in the same turn share one transaction; none waits for
    a later one, so a kill loses no more than a commit per row would. Whoever
    stores a result awaits its commit, so nothing counts an answer as kept
    before it is; a commit that fails raises CacheError in each of them, and
    every later store fails at once (the cache is not retried behind their
    backs). ``flush`` writes what is left at once (on shutdown).
    """

    def __init__(self, cache: ResultCache) -> None:
        self.cache = cache
        self._rows: list[CachedResult] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._failure: CacheError | None = None

    def store(self, result: CachedResult) -> asyncio.Future[None]:
        """Add ``result``; the future is done once it is committed, or fails with CacheError."""
        import asyncio

        loop = asyncio.get_running_loop()
        stored = loop.create_future()
        if self._failure is not None:
            stored.set_exception(self._failure)
            return stored
        if not self._rows:
            loop.call_soon(self._commit)
        self._rows.append(result)
        self._waiting.append(stored)
        return stored

    def flush(self) -> None:
        """Commit what is left now (on shutdown); raises CacheError if it cannot be."""
        failure = self._commit()
        if failure is not None:
            raise failure

    def _commit(self) -> CacheError | None:
        rows, self._rows = self._rows, []
        waiting, self._waiting = self._waiting, []
        failure = None
        if rows:
            try:
                self.cache.put_many(rows)
            except CacheError as exc:
                failure = self._failure = exc
        for stored in waiting:
            if stored.done():  # its waiter was cancelled (a run being stopped): the row is stored all the same
                continue
            if failure is None:
                stored.set_result(None)
            else:
                stored.set_exception(failure)
        return failure


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


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the cache; WAL lets concurrent writers and readers share it.

    Raises CacheError, naming the file, when it cannot be created, opened or set up.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the folder of the result cache {path}: {exc.strerror or exc}") from None
    try:
        connection = sqlite3.connect(path, timeout=30)
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
