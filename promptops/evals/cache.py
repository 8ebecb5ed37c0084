"""The eval result cache: one SQLite file, one row per model call, written as results arrive.

Other stages read it too: the cost estimate uses the output tokens the
model actually produced for a prompt, where any were observed.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class ObservedOutput:
    mean_tokens: float
    calls: int
    same_version: bool  # False: observed on another version of the prompt with the same model


def cache_path(root: Path, configured: str | None) -> Path:
    return root / (configured or DEFAULT_PATH)


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the cache; WAL lets concurrent writers and readers share it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.executescript(SCHEMA)
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
