"""`promptops demo`: the whole PR check on a two-commit copy of the bundled example, offline.

The base commit is examples/support-assistant as shipped; the head commit is a
typical prompt edit on a branch (the answer prompt loses its citation rule
and moves to a bigger model). `promptops ci` then runs for real: lint, cost,
diff and the impacted eval suite at both commits, through litellm, against the
embedded default model (promptops.testing.demo) served on loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from promptops import git, resources
from promptops.errors import UsageError

EXAMPLE = "support-assistant"
PROMPT_FILE = Path("prompts/answer.prompt.yaml")
# The head commit's edit: (old text, new text), each of which must be found exactly once.
EDITS = (
    ("      - Cite the passages you used, like [1] or [2][3].\n", ""),
    ("  name: openai/gpt-4o-mini\n", "  name: openai/gpt-4o\n"),
)
BRANCH = "shorter-answers"


class DemoError(UsageError):
    """The demo cannot be set up where asked; the message says why."""


def build_repository(directory: Path) -> Path:
    """A git repository in DIRECTORY/repo: main holds the example, BRANCH one prompt edit on top.

    DIRECTORY must be new or empty: the report goes next to the repository, and nothing is overwritten.
    """
    if directory.exists() and any(directory.iterdir()):
        raise DemoError(f"{directory} exists and is not empty; choose a new folder (promptops demo DIR)")
    target = directory / "repo"
    source = resources.data_dir("examples") / EXAMPLE
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".promptops", "__pycache__"))
    _git(target, "init", "-q", "-b", "main")
    _git(target, "add", "-A")
    _git(target, "commit", "-q", "-m", "Support assistant as reviewed")
    _git(target, "switch", "-q", "-c", BRANCH)
    prompt = target / PROMPT_FILE
    text = prompt.read_text(encoding="utf-8")
    for old, new in EDITS:
        if text.count(old) != 1:
            raise DemoError(f"the bundled example changed: {PROMPT_FILE} no longer holds {old.strip()!r}")
        text = text.replace(old, new)
    prompt.write_text(text, encoding="utf-8")
    _git(target, "commit", "-q", "-a", "-m", "Shorter answers on a bigger model")
    return target


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
