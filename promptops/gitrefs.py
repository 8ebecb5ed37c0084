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

from promptops import git
from promptops.codes import UNREADABLE_FILE
from promptops.config import ConfigError, Workspace, load_workspace
from promptops.discover import SKIPPED_DIRS, project_root
from promptops.findings import Finding, Severity
from promptops.loader import MAX_DATASET_BYTES, MAX_FILE_BYTES, decode_text
from promptops.specs import CONFIG_NAME, ProjectConfig, kind_of

WORKING_TREE = "working tree"

# A ref that cannot be used is, to the user, a git failure like any other: one error type, whose message says
# what to do about it.
RefError = git.GitError
_NOT_A_REPOSITORY = "{start} is not inside a git repository; cost and diff compare two git refs"
STAGED = "staged changes"
EMPTY = ""  # the tree before the first commit


@dataclass(frozen=True)
class Ref:
    label: str  # what the user asked for, or how it was chosen
    tree: str | None  # a tree's id, EMPTY before the first commit; None means the working tree
    name: str = WORKING_TREE  # a short commit id, or what the tree is
    commit: str | None = None  # the commit's full id, when the ref is one

    def __str__(self) -> str:
        return self.label if self.label == self.name else f"{self.label} ({self.name})"


def commit_ref(label: str, commit: git.Commit) -> Ref:
    return Ref(label, commit.tree, commit.sha[:12], commit.sha)


def staged_refs(start: Path) -> tuple[git.Repository, Ref, Ref]:
    """HEAD (the base) and the index (the head), as a commit hook sees a change: three git calls, no GitPython."""
    root = git.toplevel(start)
    if root is None:
        raise RefError(_NOT_A_REPOSITORY.format(start=start))
    index = Ref(STAGED, git.index_tree(root), STAGED)
    head = git.head_commit_and_tree(root)
    if head is None:  # the first commit: everything staged is new
        return git.Repository(root), Ref("no commits yet", EMPTY, "empty"), index
    commit, tree = head
    return git.Repository(root), Ref("HEAD", tree, commit[:12], commit), index


class GitTree:
    """The files of one git tree, behind the same two methods as loader.WorkTree.

    The tree is listed once, and every file a project may need is read on first use in one go.
    """

    _READABLE = (".yaml", ".yml", ".jsonl", ".csv")

    def __init__(self, repo_root: Path, tree: str, name: str) -> None:
        self.repo_root = repo_root
        self.name = name
        self.entries: dict[str, git.Blob] = git.tree_files(repo_root, tree) if tree != EMPTY else {}
        self._contents: dict[str, bytes] | None = None

    def _relative(self, path: Path) -> str | None:
        try:
            return PurePosixPath(Path(os.path.abspath(path)).relative_to(self.repo_root)).as_posix()
        except ValueError:
            return None

    def is_file(self, path: Path) -> bool:
        relative = self._relative(path)
        return relative is not None and relative in self.entries

    def read(self, path: Path, display: str, limit: int = MAX_FILE_BYTES) -> tuple[str | None, Finding | None]:
        relative = self._relative(path) or ""
        blob = self.entries.get(relative)
        if blob is None:
            return None, Finding(display, 1, 1, UNREADABLE_FILE, f"does not exist at {self.name}", Severity.ERROR)
        if blob.is_symlink:
            return None, Finding(display, 1, 1, UNREADABLE_FILE, "is a symlink in the commit; not followed",
                                 Severity.ERROR)
        if blob.size > limit:
            message = f"is {blob.size:,} bytes; files over {limit:,} bytes are not read"
            return None, Finding(display, 1, 1, UNREADABLE_FILE, message, Severity.ERROR)
        data = self._read_all().get(blob.sha)
        if data is None:  # a kind of file the bulk read skips: read it alone
            data = git.read_blob(self.repo_root, blob.sha)
        return decode_text(data, display)

    def _read_all(self) -> dict[str, bytes]:
        if self._contents is None:
            shas = sorted({blob.sha for path, blob in self.entries.items()
                           if path.endswith(self._READABLE) and not blob.is_symlink and blob.size <= MAX_DATASET_BYTES})
            self._contents = git.read_blobs(self.repo_root, shas)
        return self._contents

    def spec_files(self, under: Path) -> list[Path]:
        """Spec files below ``under`` (a folder in the work tree), as work-tree paths."""
        prefix = self._relative(under)
        if prefix is None:  # outside the repository: none of its files
            return []
        found = []
        for relative in self.entries:
            parts = PurePosixPath(relative).parts
            inside = prefix in ("", ".") or relative.startswith(prefix + "/")
            if inside and kind_of(relative) and not any(p in SKIPPED_DIRS for p in parts[:-1]):
                found.append(self.repo_root / relative)
        return sorted(found)


def changed_files(repo_root: Path, base: Ref) -> list[str]:
    """Paths (relative to the repository) that differ between ``base`` and the working tree,
    new untracked files included and git-ignored ones not."""
    if base.tree is None:
        return []
    return git.changed_files(repo_root, None if base.tree == EMPTY else base.tree)


def open_repo(start: Path) -> git.Repository:
    repository = git.Repository.find(start)
    if repository is None:
        raise RefError(_NOT_A_REPOSITORY.format(start=start))
    return repository


def resolve_refs(repo: git.Repository, base: str | None, head: str | None) -> tuple[Ref, Ref]:
    """The base and head to compare, with labels that say how each was chosen (``staged_refs`` for the index)."""
    head_commit = None if head is None else _commit(repo, head)
    head_ref = Ref(WORKING_TREE, None) if head is None or head_commit is None else commit_ref(head, head_commit)
    if base is not None:
        return commit_ref(base, _commit(repo, base)), head_ref
    target = _default_base_branch(repo)
    tip = _commit(repo, target)
    merge_base = repo.merge_base((head_commit or _head_commit(repo)).sha, tip.sha)
    if merge_base is None:
        raise RefError(_missing_history(repo, target, "has no common history with HEAD"))
    return commit_ref(f"merge-base with {target}", merge_base), head_ref


def _default_base_branch(repo: git.Repository) -> str:
    """$GITHUB_BASE_REF in a pull-request job, else the remote's default branch, else main or master."""
    names = repo.ref_names()
    pr_base = os.environ.get("GITHUB_BASE_REF")
    if pr_base:
        for candidate in (f"origin/{pr_base}", pr_base):
            if candidate in names:
                return candidate
        raise RefError(_missing_history(repo, f"origin/{pr_base}", "is not in this clone"))
    remote_head = repo.remote_default_branch()
    if remote_head:
        return remote_head
    for candidate in ("origin/main", "origin/master", "main", "master"):
        if candidate in names:
            return candidate
    raise RefError("cannot tell the base branch: no origin/HEAD, main or master; pass --base REF")


def _head_commit(repo: git.Repository) -> git.Commit:
    commit = repo.head()
    if commit is None:
        raise RefError("the repository has no commits yet; commit something, or pass --base and --head")
    return commit


def _commit(repo: git.Repository, ref: str) -> git.Commit:
    commit = repo.commit(ref)
    if commit is None:
        raise RefError(_missing_history(repo, ref, "is not a known commit, branch or tag"))
    return commit


def _missing_history(repo: git.Repository, ref: str, what: str) -> str:
    branch = ref.removeprefix("origin/")
    message = f"base ref '{ref}' {what}"
    if repo.is_shallow():
        return (f"{message}: this is a shallow clone. Fetch the base first: "
                f"`git fetch --no-tags --depth=100 origin {branch}` "
                f"(or use actions/checkout with fetch-depth: 0)")
    return f"{message}. Fetch it (`git fetch origin {branch}`) or pass --base REF"


# Files loaded by snapshots in this process, by name and content: what base and head share is parsed once.
_LOADED: dict[tuple[Any, ...], Any] = {}


def snapshot(repo: git.Repository, ref: Ref, start: Path, trusted: ProjectConfig | None = None) -> Workspace:
    """The project around ``start`` as it is at ``ref``; a ref without promptops.yaml gets defaults.

    ``trusted``: the base ref's config, whose settings that guard the run win (``config.guarded_by``).
    """
    if ref.tree is None:
        return load_workspace(start, trusted=trusted, memo=_LOADED)
    repo_root = repo.root.resolve()
    root, config_path = project_root(start)
    tree = GitTree(repo_root, ref.tree, ref.name)
    if config_path is not None and not tree.is_file(config_path):
        config_path = None  # the project had no promptops.yaml then
    try:
        return load_workspace(start, files=tree, root=root, config_path=config_path,
                              candidates=tree.spec_files(root), label=ref.name, trusted=trusted, memo=_LOADED)
    except ConfigError as exc:
        raise RefError(f"{CONFIG_NAME} at {ref.name} is unusable:\n{exc}") from None
