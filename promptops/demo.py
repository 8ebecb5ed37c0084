"""`promptops demo`: the whole PR check on a git copy of the bundled example with a branch to review, offline.

The base commit is examples/support-assistant as shipped; the branch adds two
typical commits on top: the answer prompt loses its citation rule and moves to
a bigger model, then, to pay for it, the retrieval config sends that model one
passage instead of four. `promptops ci` then runs for real: lint, cost, diff
and the impacted eval suites at both commits (the fixture suite, and the
retrieval-backed one whose passages come from the example's help-centre corpus
through the stub's embeddings and rerank), through litellm, against the
embedded default model (promptops.testing.demo) served on loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from promptops import git, resources
from promptops.errors import UsageError

EXAMPLE = "support-assistant"


@dataclass(frozen=True)
class Commit:
    """A commit on the demo's branch: edits to one file, each (old text, new text) found there exactly once."""

    message: str
    file: Path
    edits: tuple[tuple[str, str], ...]


BRANCH_COMMITS = (
    Commit("Shorter answers on a bigger model", Path("prompts/answer.prompt.yaml"), (
        ("      - Cite the passages you used, like [1] or [2][3].\n", ""),
        ("  name: openai/gpt-4o-mini\n", "  name: openai/gpt-4o\n"),
    )),
    Commit("Send the bigger model one passage instead of four", Path("retrieval/support_kb.retrieval.yaml"), (
        ("  top_n: 4                 # support.answer receives these 4 chunks\n",
         "  top_n: 1                 # support.answer receives the best chunk only\n"),
    )),
)
BRANCH = "shorter-answers"
# The index and the result cache are rebuilt from the files, never committed.
GITIGNORE = ".promptops/\n"


class DemoError(UsageError):
    """The demo cannot be set up where asked; the message says why."""


def build_repository(directory: Path) -> Path:
    """A git repository in DIRECTORY/repo: main holds the example, BRANCH the BRANCH_COMMITS on top.

    DIRECTORY must be new or empty: the report goes next to the repository, and nothing is overwritten.
    """
    if directory.exists() and any(directory.iterdir()):
        raise DemoError(f"{directory} exists and is not empty; choose a new folder (promptops demo DIR)")
    target = directory / "repo"
    source = resources.data_dir("examples") / EXAMPLE
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".promptops", "__pycache__"))
    (target / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    _git(target, "init", "-q", "-b", "main")
    _git(target, "add", "-A")
    _git(target, "commit", "-q", "-m", "Support assistant as reviewed")
    _git(target, "switch", "-q", "-c", BRANCH)
    for commit in BRANCH_COMMITS:
        _edit(target / commit.file, commit)
        _git(target, "commit", "-q", "-a", "-m", commit.message)
    return target


def _edit(path: Path, commit: Commit) -> None:
    text = path.read_text(encoding="utf-8")
    for old, new in commit.edits:
        if text.count(old) != 1:
            raise DemoError(f"the bundled example changed: {commit.file} no longer holds {old.strip()!r}")
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


def run_ci_on_demo(repository: Path, report_dir: Path) -> int:
    """`promptops ci` in ``repository`` against the embedded model; its exit code."""
    from promptops.testing import StubServer
    from promptops.testing.demo import respond

    environment = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GIT_"))}
    environment.pop("OPENAI_API_KEY", None)  # the demo never reaches a real provider
    with StubServer(responder=respond, latency_ms=120, jitter_ms=260, seed=7, verbose=False) as server:
        done = subprocess.run([sys.executable, "-m", "promptops", "ci", "--api-base", server.base_url,
                               "--report-dir", str(report_dir), "--no-comment"],
                              cwd=repository, env=environment, stdin=subprocess.DEVNULL, timeout=900)
    return done.returncode


# The demo's commits are its own, whatever the user's git config says.
_IDENTITY = {"user.name": "promptops demo", "user.email": "demo@promptops.invalid", "commit.gpgsign": "false"}


def _git(cwd: Path, *args: str) -> None:
    try:
        git.run(cwd, *args, config=_IDENTITY, timeout=60)
    except git.GitError as exc:
        raise DemoError(f"git {exc.command} failed in {cwd}: {exc.detail}") from None
