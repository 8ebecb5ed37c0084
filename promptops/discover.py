"""Find a project's files: promptops.yaml by walking up, specs by their suffix."""

from __future__ import annotations

import fnmatch
import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from promptops import git
from promptops.specs import CONFIG_NAME, kind_of

SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".svn", "node_modules", ".venv", "venv", ".tox", ".nox", "__pycache__",
     "site-packages", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".promptops"}
)


def find_config(start: Path) -> Path | None:
    """The nearest promptops.yaml in ``start`` or a folder above it."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def project_root(start: Path) -> tuple[Path, Path | None]:
    """The project root and its promptops.yaml, if any (else the git top level, else ``start``)."""
    config = find_config(start)
    if config:
        return config.parent, config
    return (git.toplevel(start) or start.resolve()), None


def escapes(root: Path, relative: str) -> str | None:
    """How ``relative`` (a path in promptops.yaml, from its folder) leads out of ``root``, or None if it stays in.

    Symlinks are resolved on disk as far as the path exists, so a folder committed as a link to / is
    caught as surely as '..' or an absolute path.
    """
    real_root = Path(os.path.realpath(root))
    if Path(relative).is_absolute():
        return "is an absolute path"
    if not Path(os.path.normpath(real_root / relative)).is_relative_to(real_root):
        return "leads out of the project with '..'"
    real = Path(os.path.realpath(real_root / relative))
    if not real.is_relative_to(real_root):
        return f"leads out of the project through a symlink (to {real})"
    return None


def discover(root: Path, paths: Iterable[Path] = (), exclude: Iterable[str] = ()) -> list[Path]:
    """Spec files under ``paths`` (default: the root), sorted, without what should be skipped.

    Files named explicitly are kept whatever their location (pre-commit passes
    exactly the files it wants checked); folders are searched.
    """
    root = root.resolve()
    exclude = list(exclude)
    found: set[Path] = set()
    for path in list(paths) or [root]:
        path = path if path.is_absolute() else Path.cwd() / path
        if path.is_dir():
            found.update(p for p in _walk(path) if not excluded(p, root, exclude))
        elif kind_of(path):
            found.add(path)
    return sorted(found)


def excluded(path: Path, root: Path, patterns: Sequence[str]) -> bool:
    if not patterns:
        return False
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        relative = path.as_posix()
    return any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)


def _walk(folder: Path) -> list[Path]:
    listed = _git_files(folder)
    if listed is None:
        return list(_walk_tree(folder))
    return [p for p in listed if kind_of(p) and allowed(p, folder)]


def _git_files(folder: Path) -> list[Path] | None:
    """Tracked and untracked files that git does not ignore; None outside a git work tree."""
    names = git.listed_files(folder)
    if names is None:
        return None
    return [folder / name for name in names if os.path.lexists(folder / name)]


def allowed(path: Path, top: Path) -> bool:
    """Nothing inside skipped folders or virtualenvs, even when git tracks it."""
    parts = path.relative_to(top).parts[:-1]
    if any(part in SKIPPED_DIRS for part in parts):
        return False
    current = top
    for part in parts:
        current = current / part
        if _is_virtualenv(current):
            return False
    return True


@functools.lru_cache(maxsize=4096)
def _is_virtualenv(folder: Path) -> bool:
    return (folder / "pyvenv.cfg").exists()


def _walk_tree(folder: Path) -> Iterable[Path]:
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(
            d for d in dirs if d not in SKIPPED_DIRS and not _is_virtualenv(Path(current) / d)
        )
        for name in files:
            if kind_of(name):
                yield Path(current) / name
