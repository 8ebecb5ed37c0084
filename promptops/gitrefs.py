"""Specs at any git ref, read from git's objects without checking anything out.

``resolve_refs`` settles which base and head a comparison uses (a pull
request's base in GitHub Actions, else the merge-base with the default
branch; the working tree by default for the head) and ``snapshot`` loads
the project as it is at one of them.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from promptops.config import ConfigError, Workspace, load_workspace
from promptops.discover import SKIPPED_DIRS, project_root
from promptops.errors import UsageError
from promptops.findings import Finding, Severity
from promptops.loader import MAX_DATASET_BYTES, MAX_FILE_BYTES, decode_text
from promptops.specs import CONFIG_NAME, ProjectConfig, kind_of

WORKING_TREE = "working tree"


class RefError(UsageError):
    """A ref that cannot be used; the message says what to do about it."""


STAGED = "staged changes"
EMPTY = ()  # the tree before the first commit


@dataclass(frozen=True)
class Ref:
    label: str  # what the user asked for, or how it was chosen
    tree: Any | None  # a git.Tree; None means the working tree
    name: str = WORKING_TREE  # a short commit id, or what the tree is

    def __str__(self) -> str:
        return self.label if self.label == self.name else f"{self.label} ({self.name})"


def commit_ref(label: str, commit: Any) -> Ref:
    return Ref(label, commit.tree, commit.hexsha[:12])


@dataclass(frozen=True)
class TreeId:
    """A git tree by its sha: all that GitTree and changed_files ask of a tree."""

    hexsha: str


@dataclass(frozen=True)
class WorkTreeRepo:
    """All that ``snapshot`` asks of a repository, for the commit hook's refs, read without GitPython
    (importing it costs more than the three git calls the hook needs)."""

    working_tree_dir: str


def staged_refs(start: Path) -> tuple[WorkTreeRepo, Ref, Ref]:
    """HEAD (the base) and the index (the head), as a commit hook sees a change.

    The index is written as a tree object (no ref moves) by git itself, so that GIT_INDEX_FILE (set
    during `git commit <paths>`) is honoured.
    """
    from promptops.discover import git_toplevel

    root = git_toplevel(start)
    if root is None:
        raise RefError(f"{start} is not inside a git repository; cost and diff compare two git refs")
    index = Ref(STAGED, TreeId(_git(root, "write-tree").decode().strip()), STAGED)
    head = subprocess.run(["git", "show", "-s", "--format=%H %T", "HEAD", "--"], cwd=root, capture_output=True,
                          timeout=600)
    if head.returncode != 0:  # the first commit: everything staged is new
        return WorkTreeRepo(str(root)), Ref("no commits yet", EMPTY, "empty"), index
    commit, tree = head.stdout.decode().split()
    return WorkTreeRepo(str(root)), Ref("HEAD", TreeId(tree), commit[:12]), index


class GitTree:
    """The files of one git tree, behind the same two methods as loader.WorkTree.

    One `git ls-tree` lists the tree and one `git cat-file --batch` reads every
    file a project may need, on first use: a round trip per file would cost more
    than reading them all.
    """

    _READABLE = (".yaml", ".yml", ".jsonl", ".csv")

    def __init__(self, repo_root: Path, tree: Any, name: str) -> None:
        self.repo_root = repo_root
        self.name = name
        self.entries: dict[str, tuple[str, str, int]] = {}  # path -> (mode, sha, size)
        self._contents: dict[str, bytes] | None = None
        if tree != EMPTY:
            listing = _git(repo_root, "ls-tree", "-r", "-z", "--long", tree.hexsha)
            for record in listing.split(b"\0"):
                if record:
                    meta, _, path = record.partition(b"\t")
                    mode, kind, sha, size = meta.split()
                    if kind == b"blob":
                        name_ = path.decode("utf-8", "surrogateescape")
                        self.entries[name_] = (mode.decode(), sha.decode(), int(size))

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
        entry = self.entries.get(relative)
        if entry is None:
            return None, Finding(display, 1, 1, "PO100", f"does not exist at {self.name}", Severity.ERROR)
        mode, sha, size = entry
        if mode == "120000":
            return None, Finding(display, 1, 1, "PO100", "is a symlink in the commit; not followed", Severity.ERROR)
        if size > limit:
            message = f"is {size:,} bytes; files over {limit:,} bytes are not read"
            return None, Finding(display, 1, 1, "PO100", message, Severity.ERROR)
        contents = self._read_all()
        data = contents.get(sha)
        if data is None:  # a kind of file the bulk read skips: read it alone
            data = _git(self.repo_root, "cat-file", "blob", sha)
        return decode_text(data, display)

    def _read_all(self) -> dict[str, bytes]:
        if self._contents is None:
            shas = sorted({sha for path, (mode, sha, size) in self.entries.items()
                           if path.endswith(self._READABLE) and mode != "120000" and size <= MAX_DATASET_BYTES})
            self._contents = _cat_file_batch(self.repo_root, shas)
        return self._contents

    def spec_files(self, under: Path) -> list[Path]:
        """Spec files below ``under`` (a folder in the work tree), as work-tree paths."""
        prefix = self._relative(under)
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
    untracked = _git(repo_root, "ls-files", "-z", "--others", "--exclude-standard")
    if base.tree is None:
        return []
    if base.tree == EMPTY:
        tracked = _git(repo_root, "ls-files", "-z")
    else:
        tracked = _git(repo_root, "diff", "--name-only", "--no-renames", "-z", base.tree.hexsha)
    names = (tracked + untracked).decode("utf-8", "surrogateescape").split("\0")
    return sorted({name for name in names if name})


def _git(repo_root: Path, *args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["git", *args], cwd=repo_root, input=stdin, capture_output=True, timeout=600)
    if done.returncode != 0:
        raise RefError(f"git {args[0]} failed: {done.stderr.decode('utf-8', 'replace').strip()}")
    return done.stdout


def _cat_file_batch(repo_root: Path, shas: list[str]) -> dict[str, bytes]:
    """Contents of many blobs from one `git cat-file --batch`: '<sha> <type> <size>' then the bytes."""
    output = _git(repo_root, "cat-file", "--batch", stdin="".join(f"{sha}\n" for sha in shas).encode())
    contents, position = {}, 0
    while position < len(output):
        header_end = output.index(b"\n", position)
        header = output[position:header_end].decode().split()
        if len(header) != 3:  # "<sha> missing": left out; read() then asks for it alone and says why
            position = header_end + 1
            continue
        sha, _, size = header
        start = header_end + 1
        contents[sha] = output[start : start + int(size)]
        position = start + int(size) + 1  # each object is followed by a newline
    return contents


def open_repo(start: Path) -> Any:
    import git

    try:
        return git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise RefError(f"{start} is not inside a git repository; cost and diff compare two git refs") from None


def resolve_refs(repo: Any, base: str | None, head: str | None) -> tuple[Ref, Ref]:
    """The base and head to compare, with labels that say how each was chosen (``staged_refs`` for the index)."""
    head_commit = _commit(repo, head) if head is not None else None
    head_ref = Ref(WORKING_TREE, None) if head_commit is None else commit_ref(head, head_commit)
    if base is not None:
        return commit_ref(base, _commit(repo, base)), head_ref
    target = _default_base_branch(repo)
    tip = _commit(repo, target)
    merge_bases = repo.merge_base(head_commit or _head_commit(repo), tip)
    if not merge_bases:
        raise RefError(_missing_history(repo, target, "has no common history with HEAD"))
    return commit_ref(f"merge-base with {target}", merge_bases[0]), head_ref


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
        commit = repo.commit(ref)
        commit.tree  # a shallow clone names parents whose objects it does not hold
        return commit
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


# Files loaded by snapshots in this process, by name and content: what base and head share is parsed once.
_LOADED: dict[tuple[Any, ...], Any] = {}


def snapshot(repo: Any, ref: Ref, start: Path, trusted: ProjectConfig | None = None) -> Workspace:
    """The project around ``start`` as it is at ``ref``; a ref without promptops.yaml gets defaults.

    ``trusted``: the base ref's config, whose settings that guard the run win (``config.guarded_by``).
    """
    if ref.tree is None:
        return load_workspace(start, trusted=trusted, memo=_LOADED)
    repo_root = Path(repo.working_tree_dir).resolve()
    root, config_path = project_root(start)
    tree = GitTree(repo_root, ref.tree, ref.name)
    if config_path is not None and not tree.is_file(config_path):
        config_path = None  # the project had no promptops.yaml then
    try:
        return load_workspace(start, files=tree, root=root, config_path=config_path,
                              candidates=tree.spec_files(root), label=ref.name, trusted=trusted, memo=_LOADED)
    except ConfigError as exc:
        raise RefError(f"{CONFIG_NAME} at {ref.name} is unusable:\n{exc}") from None
