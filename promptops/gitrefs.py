"""Specs at any git ref, read from git's objects without checking anything out.

``resolve_refs`` settles which base and head a comparison uses (a pull
request's base in GitHub Actions, else the merge-base with the default
branch; the working tree by default for the head) and ``snapshot`` loads
the project as it is at one of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from promptops.config import ConfigError, Workspace, load_workspace
from promptops.discover import SKIPPED_DIRS, project_root
from promptops.findings import Finding, Severity
from promptops.loader import MAX_FILE_BYTES, decode_text
from promptops.specs import CONFIG_NAME, kind_of

WORKING_TREE = "working tree"


class RefError(Exception):
    """A ref that cannot be used; the message says what to do about it."""


@dataclass(frozen=True)
class Ref:
    label: str  # what the user asked for, or how it was chosen
    commit: Any | None  # a git.Commit; None means the working tree

    @property
    def short(self) -> str:
        return self.commit.hexsha[:12] if self.commit is not None else WORKING_TREE


class GitTree:
    """The files of one commit, behind the same two methods as loader.WorkTree."""

    def __init__(self, repo_root: Path, commit: Any) -> None:
        self.repo_root = repo_root
        self.commit = commit
        self.blobs: dict[str, Any] = {}
        for item in commit.tree.traverse():
            if item.type == "blob":
                self.blobs[item.path] = item

    def _relative(self, path: Path) -> str | None:
        try:
            return PurePosixPath(Path(os.path.abspath(path)).relative_to(self.repo_root)).as_posix()
        except ValueError:
            return None

    def is_file(self, path: Path) -> bool:
        relative = self._relative(path)
        return relative is not None and relative in self.blobs

    def read(self, path: Path, display: str, limit: int = MAX_FILE_BYTES) -> tuple[str | None, Finding | None]:
        blob = self.blobs.get(self._relative(path) or "")
        if blob is None:
            return None, Finding(display, 1, 1, "PO100", f"does not exist at {self.commit.hexsha[:12]}", Severity.ERROR)
        if blob.mode == 0o120000:
            return None, Finding(display, 1, 1, "PO100", "is a symlink in the commit; not followed", Severity.ERROR)
        if blob.size > limit:
            message = f"is {blob.size:,} bytes; files over {limit:,} bytes are not read"
            return None, Finding(display, 1, 1, "PO100", message, Severity.ERROR)
        return decode_text(blob.data_stream.read(), display)

    def spec_files(self, under: Path) -> list[Path]:
        """Spec files below ``under`` (a folder in the work tree), as work-tree paths."""
        prefix = self._relative(under)
        found = []
        for relative in self.blobs:
            parts = PurePosixPath(relative).parts
            inside = prefix in ("", ".") or relative.startswith(prefix + "/")
            if inside and kind_of(relative) and not any(p in SKIPPED_DIRS for p in parts[:-1]):
                found.append(self.repo_root / relative)
        return sorted(found)


def open_repo(start: Path) -> Any:
    import git

    try:
        return git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise RefError(f"{start} is not inside a git repository; cost and diff compare two git refs") from None


def resolve_refs(repo: Any, base: str | None, head: str | None) -> tuple[Ref, Ref]:
    """The base and head to compare, with labels that say how each was chosen."""
    head_ref = Ref(WORKING_TREE, None) if head is None else Ref(head, _commit(repo, head))
    if base is not None:
        return Ref(base, _commit(repo, base)), head_ref
    target = _default_base_branch(repo)
    tip = _commit(repo, target)
    anchor = head_ref.commit if head_ref.commit is not None else _head_commit(repo)
    merge_bases = repo.merge_base(anchor, tip)
    if not merge_bases:
        raise RefError(_missing_history(repo, target, "has no common history with HEAD"))
    return Ref(f"merge-base with {target}", merge_bases[0]), head_ref


def _default_base_branch(repo: Any) -> str:
    """$GITHUB_BASE_REF in a pull-request job, else the remote's default branch, else main or master."""
    names = {ref.name for ref in repo.refs}
    pr_base = os.environ.get("GITHUB_BASE_REF")
    if pr_base:
        for candidate in (f"origin/{pr_base}", pr_base):
            if candidate in names:
                return candidate
        raise RefError(_missing_history(repo, f"origin/{pr_base}", "is not in this clone"))
    try:
        remote_head = repo.git.symbolic_ref("refs/remotes/origin/HEAD", "--short")
        if remote_head:
            return remote_head
    except Exception:  # no origin/HEAD: a local repository, or a clone made without it
        pass
    for candidate in ("origin/main", "origin/master", "main", "master"):
        if candidate in names:
            return candidate
    raise RefError("cannot tell the base branch: no origin/HEAD, main or master; pass --base REF")


def _head_commit(repo: Any) -> Any:
    try:
        return repo.head.commit  # works on a detached HEAD too
    except ValueError:
        raise RefError("the repository has no commits yet; commit something, or pass --base and --head") from None


def _commit(repo: Any, ref: str) -> Any:
    import git

    try:
        return repo.commit(ref)
    except (git.BadName, git.BadObject, ValueError):
        raise RefError(_missing_history(repo, ref, "is not a known commit, branch or tag")) from None


def _missing_history(repo: Any, ref: str, what: str) -> str:
    branch = ref.removeprefix("origin/")
    shallow = repo.git.rev_parse("--is-shallow-repository") == "true"
    message = f"base ref '{ref}' {what}"
    if shallow:
        return (f"{message}: this is a shallow clone. Fetch the base first: "
                f"`git fetch --no-tags --depth=100 origin {branch}` "
                f"(or use actions/checkout with fetch-depth: 0)")
    return f"{message}. Fetch it (`git fetch origin {branch}`) or pass --base REF"


def snapshot(repo: Any, ref: Ref, start: Path) -> Workspace:
    """The project around ``start`` as it is at ``ref``; a ref without promptops.yaml gets defaults."""
    if ref.commit is None:
        return load_workspace(start)
    repo_root = Path(repo.working_tree_dir).resolve()
    root, config_path = project_root(start)
    tree = GitTree(repo_root, ref.commit)
    if config_path is not None and not tree.is_file(config_path):
        config_path = None  # the project had no promptops.yaml then
    try:
        return load_workspace(start, files=tree, root=root, config_path=config_path,
                              candidates=tree.spec_files(root), label=ref.short)
    except ConfigError as exc:
        raise RefError(f"{CONFIG_NAME} at {ref.short} is unusable:\n{exc}") from None
