"""What the release stage did and found, as the release commands build it and the reports read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

CURRENT, BEHIND, REMOVED = "current", "behind", "removed"
SNAPSHOT_OK, SNAPSHOT_MISSING, SNAPSHOT_ALTERED = "ok", "missing", "altered"


@dataclass(frozen=True)
class Cell:
    version: str
    state: str  # current (the head's version), behind (an older one), removed (the prompt is gone at head)
    promoted_at: str
    promoted_by: str
    forced: bool
    snapshot: str = SNAPSHOT_OK  # missing, or altered (edited, unreadable, or another prompt's): not what was promoted
    snapshot_problem: str | None = None  # why, naming the file


@dataclass(frozen=True)
class Row:
    prompt_id: str
    head: str | None  # the version at head; None when the prompt is no longer there
    cells: dict[str, Cell | None]


class Action(str, Enum):
    """What a promote or rollback did (its value is the lock's and the audit log's word)."""

    PROMOTE = "promote"
    ROLLBACK = "rollback"
    UNCHANGED = "unchanged"  # the environment already held that version: nothing written


@dataclass
class ReleaseOutcome:
    action: Action
    prompt_id: str
    environment: str
    version: str
    previous: str | None
    evidence: dict[str, Any] | None = None
    overridden: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)  # what this change created or changed
    files: list[Path] = field(default_factory=list)  # what the environments' state is in: --commit's files
    committed: str | None = None  # the commit made with --commit
    notes: list[str] = field(default_factory=list)
