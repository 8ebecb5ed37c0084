"""The checkout and real git repositories: git in a temporary repository, a copy of the checkout, $GITHUB_OUTPUT.

Tests that build, install or hook up promptops work on a copy of the checkout: the files on disk, committed or
not, minus what git ignores. They never write into the checkout itself (no stray build/ or *.egg-info, nothing
that two test runs could fight over), and they test the working tree a developer is editing, not the last commit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
FIXTURES = TESTS / "fixtures"

# Folders that are not source, for a checkout that is not a git repository (an unpacked sdist, say).
_NOT_SOURCE = {".git", "build", "dist", "__pycache__", ".pytest_cache", ".venv", "venv", ".tox", ".nox",
               ".promptops", ".mypy_cache", ".ruff_cache", "node_modules"}


def git_env(**extra: str) -> dict[str, str]:
    """The environment for git (and pre-commit) in a temporary repository.

    Drops GIT_* variables inherited from a calling hook (GIT_DIR, GIT_INDEX_FILE
    would point git at the wrong repository), ignores the user's and the
    system's git config (commit.gpgsign, hooks, templates), and fixes the
    identity and dates so that the same tree always gives the same commit.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_AUTHOR_NAME="promptops tests",
        GIT_AUTHOR_EMAIL="tests@promptops.invalid",
        GIT_COMMITTER_NAME="promptops tests",
        GIT_COMMITTER_EMAIL="tests@promptops.invalid",
        GIT_AUTHOR_DATE="2026-01-01T00:00:00+00:00",
        GIT_COMMITTER_DATE="2026-01-01T00:00:00+00:00",
    )
    env.update(extra)
    return env


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=git_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd}:\n{done.stdout}{done.stderr}")
    return done.stdout


def source_files() -> list[str]:
    """Paths (relative to the checkout) of its files: tracked and new ones, not ignored ones."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, env={k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=120,
        ).stdout.decode("utf-8", "surrogateescape")
        # Tracked files deleted in the working tree are listed but gone.
        return sorted(name for name in set(out.split("\0")) if name and os.path.lexists(ROOT / name))
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in _NOT_SOURCE and not d.endswith(".egg-info")]
        found += [os.path.relpath(os.path.join(folder, f), ROOT) for f in files if not f.endswith((".pyc", ".pyo"))]
    return sorted(found)


def copy_source(dest: Path) -> Path:
    """Copy the checkout's files into ``dest`` (created) and return it."""
    for name in source_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target, follow_symlinks=False)
    return dest


def read_outputs(path: Path) -> dict[str, str]:
    """Parse $GITHUB_OUTPUT the way the Actions runner does."""
    values, lines = {}, iter(path.read_text(encoding="utf-8").split("\n"))
    for line in lines:
        if "<<" in line:
            name, delimiter = line.split("<<", 1)
            value = []
            for body_line in lines:
                if body_line == delimiter:
                    break
                value.append(body_line)
            else:
                raise AssertionError(f"{name}: no closing delimiter")
            values[name] = "\n".join(value)
        elif line:
            name, value = line.split("=", 1)
            values[name] = value
    return values
