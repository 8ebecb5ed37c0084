"""`promptops status` and `promptops history`: what each environment holds, and how it got there.

Status reads every release snapshot the lock names, as ``promptops.load`` and lint's PO131 do: a
snapshot that is missing, or no longer hashes to its version, is what an app would fail to load
(or load unreviewed), so it is marked and makes `promptops status` exit 1.
"""

from __future__ import annotations

import os
from typing import Any

from promptops import lockfile
from promptops.config import Workspace
from promptops.model.release import BEHIND, CURRENT, REMOVED, SNAPSHOT_ALTERED, SNAPSHOT_MISSING, SNAPSHOT_OK, Cell, Row


def status(workspace: Workspace, lock: lockfile.Lock) -> list[Row]:
    """A row per prompt at head or in the lock, a cell per environment of promptops.yaml (and of the lock)."""
    environments = environment_order(workspace, lock)
    ids = sorted(set(workspace.prompts) | {pid for held in lock.environments.values() for pid in held})
    checked = _Snapshots(lock)
    rows = []
    for prompt_id in ids:
        spec = workspace.prompts.get(prompt_id)
        head = spec.version if spec else None
        cells = {env: _cell(lock.entry(env, prompt_id), head, prompt_id, checked) for env in environments}
        rows.append(Row(prompt_id, head, cells))
    return rows


def snapshot_problems(lock: lockfile.Lock) -> list[str]:
    """Every release the lock names, held now or kept for rollback, whose snapshot is missing or altered."""
    checked = _Snapshots(lock)
    problems = []
    for environment, held in sorted(lock.environments.items()):
        for prompt_id, entry in sorted(held.items()):
            for where, release in (("", entry), *((" (history)", old) for old in entry.history)):
                _, problem = checked.state(prompt_id, release.version)
                if problem:
                    problems.append(f"{environment}/{prompt_id}{where}: {problem}")
    return problems


class _Snapshots:
    """Each snapshot read and hashed once, however many environments hold its version."""

    def __init__(self, lock: lockfile.Lock) -> None:
        self.lock = lock
        self.seen: dict[tuple[str, str], tuple[str, str | None]] = {}

    def state(self, prompt_id: str, version: str) -> tuple[str, str | None]:
        key = (prompt_id, version)
        if key not in self.seen:
            path = lockfile.snapshot_path(self.lock.releases_dir, prompt_id, version)
            shown = os.path.relpath(path, self.lock.path.parent)
            _, problem = lockfile.snapshot_problem(path, prompt_id, version, shown)
            state = SNAPSHOT_OK if problem is None else SNAPSHOT_MISSING if not path.exists() else SNAPSHOT_ALTERED
            self.seen[key] = (state, problem)
        return self.seen[key]


def environment_order(workspace: Workspace, lock: lockfile.Lock) -> list[str]:
    configured = workspace.config.environments
    return configured + sorted(env for env in lock.environments if env not in configured)


def _cell(entry: lockfile.Release | None, head: str | None, prompt_id: str, checked: _Snapshots) -> Cell | None:
    if entry is None:
        return None
    state = REMOVED if head is None else CURRENT if entry.version == head else BEHIND
    snapshot, problem = checked.state(prompt_id, entry.version)
    return Cell(entry.version, state, entry.promoted_at, entry.promoted_by, entry.forced, snapshot, problem)


def history(records: list[dict[str, Any]], prompt_id: str) -> list[dict[str, Any]]:
    """The audit log's records of one prompt, oldest first."""
    return [record for record in records if record.get("prompt") == prompt_id]
