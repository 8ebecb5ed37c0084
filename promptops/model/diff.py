"""The semantic diff of prompts and retrieval configs, as the diff stage builds it and the reports read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ItemKind = Literal["prompt", "retrieval"]
Status = Literal["added", "removed", "modified", "renamed", "unchanged", "unloadable"]
Category = Literal["model", "params", "inputs", "retrieval", "messages", "output", "budget", "metadata"]
ChangeKind = Literal["changed", "added", "removed"]


@dataclass(frozen=True)
class FieldChange:
    path: str  # dotted, as lint findings write it: model.params.temperature, messages[1].content
    category: Category
    kind: ChangeKind
    old: Any  # None when added
    new: Any  # None when removed


@dataclass(frozen=True)
class TemplateDiff:
    message_index: int
    role: str  # the head's role, or the base's for a removed message
    unified: str  # difflib.unified_diff of the message content, as one string


@dataclass(frozen=True)
class ItemDiff:
    kind: ItemKind
    id: str
    status: Status
    base_path: str | None  # the file's display path at base; None when added
    head_path: str | None  # None when removed
    base_version: str | None
    head_version: str | None
    changes: tuple[FieldChange, ...] = ()
    template_diffs: tuple[TemplateDiff, ...] = ()
    formatting_only: bool = False  # the file's text changed, its parsed content did not


@dataclass(frozen=True)
class Event:
    kind: str  # reindex-needed, model-family-changed, prompt-removed, retrieval-removed, id-changed, unloadable
    item: ItemKind
    id: str
    message: str


@dataclass(frozen=True)
class SpecDiff:
    prompts: tuple[ItemDiff, ...]
    retrievals: tuple[ItemDiff, ...]
    events: tuple[Event, ...]
