"""tiktoken vocabularies kept in promptops' cache folder, so that a commit hook counts tokens without
building tiktoken's whole encoder.

One SQLite file per encoding, built once from the encoding's source file: the arguments
``tiktoken.Encoding`` takes (``meta``), every token with its rank (``vocab``), and the token count of
every text unit counted before (``units``; see ``tokens._count_units``). A commit hook reads the counts
of the units it has seen and the ranks of the few parts of its new ones, in milliseconds, where
decoding the source file takes half a second and building tiktoken's encoder from it a fifth or more.

The file is written under a temporary name and renamed once complete, so a reader finds it whole or not
at all; one that cannot be opened is built again. Unit counts are added as they are made: one lost to a
concurrent writer is counted again, never wrong (a unit's count depends on the encoding alone).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

FORMAT = 1  # of the file; part of its name
MAX_UNITS = 500_000  # unit counts kept; past this the table starts over
_CHUNK = 900  # values a statement binds (old SQLite builds allow 999)
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE vocab (token BLOB PRIMARY KEY, rank INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE units (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE, tokens INTEGER NOT NULL);
"""
T = TypeVar("T")


class Vocabulary:
    """One encoding's file: its arguments, ranks by token, and unit counts."""

    def __init__(self, path: Path, connection: sqlite3.Connection, header: dict[str, Any], longest: int) -> None:
        self.path = path
        self._db = connection
        self.header = header  # tiktoken.Encoding's arguments but the ranks: name, pat_str, special_tokens, ...
        self.longest = longest  # bytes in the longest token

    @classmethod
    def open(cls, path: Path) -> Vocabulary | None:
        """The vocabulary in ``path``, or None when there is none or it cannot be read."""
        if not path.is_file():
            return None
        try:
            connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=1.0, isolation_level=None)
            meta = dict(connection.execute("SELECT key, value FROM meta"))
            return cls(path, connection, json.loads(meta["arguments"]), int(meta["longest"]))
        except (sqlite3.Error, KeyError, ValueError):
            return None

    @staticmethod
    def build(path: Path, arguments: dict[str, Any]) -> bool:
        """Write ``arguments`` (tiktoken.Encoding's) to ``path``; False when the folder cannot be written."""
        ranks = arguments["mergeable_ranks"]
        header = {key: value for key, value in arguments.items() if key != "mergeable_ranks"}
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _remove(temporary)
            with sqlite3.connect(temporary) as connection:
                connection.executescript(_SCHEMA)
                connection.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("arguments", json.dumps(header)), ("longest", str(max(map(len, ranks))))])
                connection.executemany("INSERT INTO vocab VALUES (?, ?)", ranks.items())
            connection.close()
            os.replace(temporary, path)
            return True
        except (OSError, sqlite3.Error):
            _remove(temporary)
            return False

    def discard(self) -> None:
        """Remove a file found damaged, so that the next run builds it again."""
        self._db.close()
        _remove(self.path)

    def arguments(self) -> dict[str, Any]:
        """Everything tiktoken.Encoding takes, the whole vocabulary included."""
        ranks = dict(self._db.execute("SELECT token, rank FROM vocab"))
        return {**self.header, "mergeable_ranks": ranks}

    def ranks(self, tokens: Iterable[bytes]) -> dict[bytes, int]:
        """The ranks of those of ``tokens`` that are in the vocabulary."""
        found: dict[bytes, int] = {}
        for chunk in _chunks(list(tokens)):
            found.update(self._db.execute(f"SELECT token, rank FROM vocab WHERE token IN ({_marks(chunk)})", chunk))
        return found

    def counts(self, units: Iterable[str]) -> dict[str, int]:
        """The token counts of those of ``units`` counted before."""
        found: dict[str, int] = {}
        for chunk in _chunks(list(units)):
            found.update(self._db.execute(f"SELECT text, tokens FROM units WHERE text IN ({_marks(chunk)})", chunk))
        return found

    def remember(self, counts: dict[str, int]) -> None:
        """Keep these unit counts for later runs; a file that cannot be written keeps none."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                last = self._db.execute("SELECT max(id) FROM units").fetchone()[0] or 0
                if last + len(counts) > MAX_UNITS:
                    self._db.execute("DELETE FROM units")
                self._db.executemany("INSERT OR IGNORE INTO units (text, tokens) VALUES (?, ?)", counts.items())
        except sqlite3.Error:
            pass


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):  # a folder we cannot write in: nothing of ours is there
        path.unlink(missing_ok=True)


def _chunks(values: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def _marks(chunk: list[Any]) -> str:
    return ",".join("?" * len(chunk))
