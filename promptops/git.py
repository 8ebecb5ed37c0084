"""Every git call promptops makes, and the one error a failed call raises.

No other module runs git or imports GitPython (a test holds them to that), so
how git is invoked is decided here once: the ``git`` on PATH, in the given
folder, with the caller's environment and the repository's own config (a pull
request's files cannot change either), stdin closed unless a command reads it.
No setting is added but the ``-c`` pairs promptops' own code passes (the
demo's identity).

Light on purpose: plumbing commands through ``subprocess`` serve the commit
hooks, lint and the lock's author. GitPython, whose import alone costs more
than the cost hook's three git calls, is imported only by ``Repository`` when
a ref is resolved by name (``cost``, ``diff``, ``ci``, ``promote``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptops.errors import UsageError

READ_TIMEOUT_S = 600  # reading a large tree or every blob a project needs
QUICK_TIMEOUT_S = 10  # a question about the repository: its top level, the author


class GitError(UsageError):
    """git cannot do what was asked: a command failed (``command`` is its name, ``detail`` what git said), or a
    repository or ref cannot be used; the message says what to do about it."""

    def __init__(self, message: str, command: str | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.command = command
        self.detail = detail

    @classmethod
    def failed(cls, command: str, detail: str) -> GitError:
        return cls(f"git {command} failed: {detail}", command, detail)


# --- running git ---------------------------------------------------------------------------------

def _run(folder: Path, args: Iterable[str], timeout: float, stdin: bytes | None = None,
         config: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """git ``args`` in ``folder``; raises OSError or TimeoutExpired as subprocess does."""
    options = [arg for name, value in (config or {}).items() for arg in ("-c", f"{name}={value}")]
    return subprocess.run(["git", *options, *args], cwd=folder, input=stdin, capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL if stdin is None else None)


def run(folder: Path, *args: str, stdin: bytes | None = None, timeout: float = READ_TIMEOUT_S,
        config: Mapping[str, str] | None = None) -> bytes:
    """git's output; raises GitError, with what git wrote to stderr, when it fails or cannot be started."""
    try:
        done = _run(folder, args, timeout, stdin, config)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError.failed(args[0], str(exc)) from None
    if done.returncode != 0:
        raise GitError.failed(args[0], _text(done.stderr))
    return done.stdout


def _ask(folder: Path, *args: str, timeout: float = QUICK_TIMEOUT_S) -> bytes | None:
    """git's output, or None when git fails, is missing or times out: for questions that have a fallback."""
    try:
        done = _run(folder, args, timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _text(output: bytes) -> str:
    return output.decode("utf-8", "replace").strip()


def _names(output: bytes) -> list[str]:
    """NUL-separated path names as git writes them with -z (undecodable bytes kept, as the file system does)."""
    return [name for name in output.decode("utf-8", "surrogateescape").split("\0") if name]


# --- the work tree -------------------------------------------------------------------------------

def toplevel(start: Path) -> Path | None:
    """The top folder of the work tree around ``start``; None outside one (or without git)."""
    output = _ask(start, "rev-parse", "--show-toplevel")
    top = os.fsdecode(output).strip() if output is not None else ""
    return Path(top) if top else None


def listed_files(folder: Path) -> list[str] | None:
    """Files below ``folder`` (relative to it), tracked or new, that git does not ignore; None outside git."""
    output = _ask(folder, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".", timeout=60)
    return None if output is None else sorted(set(_names(output)))


def grep_words(folder: Path, words: list[str], globs: list[str]) -> list[tuple[str, str]] | None:
    """(file, word) for each whole-word occurrence of ``words`` in files matching ``globs``, tracked or new,
    binary files skipped; None when git cannot tell (outside git, or it failed)."""
    patterns = [arg for word in words for arg in ("-e", word)]
    try:
        done = _run(folder, ["grep", "--untracked", "-z", "-o", "-I", "-F", "-w", *patterns, "--", *globs], 60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode not in (0, 1):  # 1: nothing matched
        return None
    found = []
    for line in done.stdout.decode("utf-8", "surrogateescape").splitlines():
        name, _, word = line.partition("\0")
        if word:
            found.append((name, word))
    return found


def author(folder: Path) -> str | None:
    """Who git would record as a commit's author (user.name <user.email>, or GIT_AUTHOR_*); None without one."""
    output = _ask(folder, "var", "GIT_AUTHOR_IDENT")
    ident = output.decode("utf-8", "replace").strip() if output is not None else ""
    return ident.rsplit(" ", 2)[0] if ident else None  # drop the timestamp and time zone


def changed_files(repo_root: Path, base_tree: str | None) -> list[str]:
    """Paths that differ between the tree ``base_tree`` (None: before the first commit) and the working tree,
    new untracked files included and ignored ones not."""
    untracked = run(repo_root, "ls-files", "-z", "--others", "--exclude-standard")
    if base_tree is None:
        tracked = run(repo_root, "ls-files", "-z")
    else:
        tracked = run(repo_root, "diff", "--name-only", "--no-renames", "-z", base_tree)
    return sorted(set(_names(tracked + untracked)))


# --- trees and blobs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Blob:
    """A file in a tree: its mode (``120000`` for a symlink), object id and size in bytes."""

    mode: str
    sha: str
    size: int

    @property
    def is_symlink(self) -> bool:
        return self.mode == "120000"


def index_tree(repo_root: Path) -> str:
    """The index written as a tree object, by git itself (so GIT_INDEX_FILE, set during `git commit <paths>`,
    is honoured); no ref moves."""
    return run(repo_root, "write-tree").decode().strip()


def head_commit_and_tree(repo_root: Path) -> tuple[str, str] | None:
    """HEAD's commit and tree ids; None before the first commit."""
    try:
        done = _run(repo_root, ["show", "-s", "--format=%H %T", "HEAD", "--"], READ_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError.failed("show", str(exc)) from None
    if done.returncode != 0:
        return None
    commit, tree = done.stdout.decode().split()
    return commit, tree


def tree_files(repo_root: Path, tree: str) -> dict[str, Blob]:
    """Every file of ``tree``, recursively, by its path in the repository."""
    files = {}
    for record in run(repo_root, "ls-tree", "-r", "-z", "--long", tree).split(b"\0"):
        if record:
            meta, _, path = record.partition(b"\t")
            mode, kind, sha, size = meta.split()
            if kind == b"blob":
                files[path.decode("utf-8", "surrogateescape")] = Blob(mode.decode(), sha.decode(), int(size))
    return files


def read_blob(repo_root: Path, sha: str) -> bytes:
    return run(repo_root, "cat-file", "blob", sha)


def read_blobs(repo_root: Path, shas: list[str]) -> dict[str, bytes]:
    """Contents of many blobs from one `git cat-file --batch` ('<sha> <type> <size>', then the bytes): a
    round trip per file would cost more than reading them all. A missing object is left out."""
    output = run(repo_root, "cat-file", "--batch", stdin="".join(f"{sha}\n" for sha in shas).encode())
    contents, position = {}, 0
    while position < len(output):
        header_end = output.index(b"\n", position)
        header = output[position:header_end].decode().split()
        if len(header) != 3:  # "<sha> missing"
            position = header_end + 1
            continue
        sha, _, size = header
        start = header_end + 1
        contents[sha] = output[start : start + int(size)]
        position = start + int(size) + 1  # each object is followed by a newline
    return contents


# --- writing -------------------------------------------------------------------------------------

def commit_only(repo_root: Path, paths: list[str], message: str) -> str:
    """Commit exactly ``paths`` (added even if .gitignore'd: asked for), whatever else is staged; the new
    commit's id. Raises GitError naming the step that failed."""
    for args in (["add", "-f", "--", *paths], ["commit", "-q", "-m", message, "--only", "--", *paths]):
        try:
            done = _run(repo_root, args, 120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GitError.failed(args[0], str(exc)) from None
        if done.returncode != 0:
            raise GitError.failed(args[0], _text(done.stderr) or _text(done.stdout))
    return _text(run(repo_root, "rev-parse", "HEAD", timeout=30))


# --- refs by name (GitPython) --------------------------------------------------------------------

@dataclass(frozen=True)
class Commit:
    sha: str
    tree: str


class Repository:
    """A work tree's repository, for resolving refs by name; a context manager that ends GitPython's
    `git cat-file` processes on exit."""

    def __init__(self, root: Path, handle: Any = None) -> None:
        self.root = root
        self._handle = handle  # a git.Repo, opened on first need

    @classmethod
    def find(cls, start: Path) -> Repository | None:
        """The repository around ``start`` (searching the folders above it); None outside one."""
        import git

        try:
            handle = git.Repo(start, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            return None
        if handle.working_tree_dir is None:  # a bare repository: no files to compare
            handle.close()
            return None
        return cls(Path(handle.working_tree_dir), handle)

    @property
    def _repo(self) -> Any:
        if self._handle is None:
            import git

            self._handle = git.Repo(self.root)
        return self._handle

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.close()

    def commit(self, ref: str) -> Commit | None:
        """The commit ``ref`` names; None when it names none, or one whose objects a shallow clone lacks."""
        import git

        try:
            found = self._repo.commit(ref)
            return Commit(found.hexsha, found.tree.hexsha)  # .tree: a shallow clone names parents it lacks
        except (git.BadName, git.BadObject, ValueError):
            return None

    def head(self) -> Commit | None:
        """HEAD's commit (a detached HEAD too); None before the first commit."""
        try:
            found = self._repo.head.commit
        except ValueError:
            return None
        return Commit(found.hexsha, found.tree.hexsha)

    def merge_base(self, one: str, other: str) -> Commit | None:
        found = self._repo.merge_base(one, other)
        return Commit(found[0].hexsha, found[0].tree.hexsha) if found else None

    def ref_names(self) -> set[str]:
        """Branches, remote branches and tags, as short names (``main``, ``origin/main``, ``v1``)."""
        return {ref.name for ref in self._repo.refs}

    def remote_default_branch(self) -> str | None:
        """origin's default branch as this clone recorded it (``origin/main``); None when it did not."""
        try:
            return self._repo.git.symbolic_ref("refs/remotes/origin/HEAD", "--short") or None
        except Exception:  # no origin/HEAD: a local repository, or a clone made without it
            return None

    def is_shallow(self) -> bool:
        return bool(self._repo.git.rev_parse("--is-shallow-repository") == "true")
