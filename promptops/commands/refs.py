"""The project at the refs a command compares, read from git's objects (or the working tree)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import click

if TYPE_CHECKING:
    from promptops.config import Workspace
    from promptops.gitrefs import Ref


class Snapshots(NamedTuple):
    base_ref: Ref
    head_ref: Ref
    base: Workspace
    head: Workspace


def snapshots(base: str | None, head: str | None, staged: bool) -> Snapshots:
    """The project at base and at head; a ref or a config that cannot be used raises its error (exit 2)."""
    from promptops.gitrefs import open_repo, resolve_refs, snapshot, staged_refs

    if staged and (base or head):
        raise click.UsageError("--staged compares HEAD with the index; it takes no --base or --head")
    if staged:
        repo, base_ref, head_ref = staged_refs(Path.cwd())
        return Snapshots(base_ref, head_ref, snapshot(repo, base_ref, Path.cwd()), snapshot(repo, head_ref, Path.cwd()))
    with open_repo(Path.cwd()) as repo:  # closed: its git cat-file processes end with the command
        base_ref, head_ref = resolve_refs(repo, base, head)
        return Snapshots(base_ref, head_ref, snapshot(repo, base_ref, Path.cwd()), snapshot(repo, head_ref, Path.cwd()))


def head_snapshot(head: str | None, staged: bool) -> tuple[Ref, Workspace]:
    """The project at the head alone: the working tree needs no git at all."""
    from promptops.config import load_workspace
    from promptops.gitrefs import WORKING_TREE, Ref, open_repo, resolve_refs, snapshot, staged_refs

    if head is None and not staged:
        return Ref(WORKING_TREE, None), load_workspace(Path.cwd())
    if staged:
        repo, _, head_ref = staged_refs(Path.cwd())
        return head_ref, snapshot(repo, head_ref, Path.cwd())
    with open_repo(Path.cwd()) as repo:
        _, head_ref = resolve_refs(repo, head, head)
        return head_ref, snapshot(repo, head_ref, Path.cwd())
