"""The promptops-cost pre-commit hook under the real pre-commit: staged changes only, warns, never blocks.

The hook's entry, files pattern and flags come from .pre-commit-hooks.yaml; it runs as a `local`
hook on this interpreter so that the test does not reinstall promptops (tests/test_precommit.py
covers installation through `pre-commit try-repo`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from helpers.repo import ROOT, git, git_env

PROMPT = """\
id: support.answer
model: {name: openai/gpt-4o, params: {max_tokens: 100}}
inputs: {type: object, required: [question], properties: {question: {type: string}}}
messages: [{role: user, content: "{{ question }}"}]
budget: {max_cost_per_call_usd: 0.01}
"""


def hook_config() -> str:
    manifest = {hook["id"]: hook for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    hook = dict(manifest["promptops-cost"])
    assert hook["entry"].startswith("promptops ")
    hook["entry"] = f"{sys.executable} -m {hook['entry']}"
    hook["language"] = "system"
    return yaml.safe_dump({"repos": [{"repo": "local", "hooks": [hook]}]})


def test_hook_reports_staged_changes_and_warns_on_budgets(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "promptops.yaml").write_text("usage: {support.answer: {calls_per_day: 100}}\n")
    (tmp_path / "answer.prompt.yaml").write_text(PROMPT)
    (tmp_path / ".pre-commit-config.yaml").write_text(hook_config())
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    # Staged: a ten times longer answer bound breaks the budget. Unstaged: a model change the hook must not see.
    (tmp_path / "answer.prompt.yaml").write_text(PROMPT.replace("max_tokens: 100", "max_tokens: 1000"))
    git(tmp_path, "add", "answer.prompt.yaml")
    (tmp_path / "answer.prompt.yaml").write_text(PROMPT.replace("max_tokens: 100", "max_tokens: 1000")
                                                 .replace("openai/gpt-4o,", "openai/gpt-4o-mini,"))
    done = subprocess.run([sys.executable, "-m", "pre_commit", "run", "promptops-cost"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env=git_env(PRE_COMMIT_HOME=str(tmp_path / "pc")))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Passed" in output
    assert "PO411" in output and "over its budget" in output
    assert "openai/gpt-4o-mini" not in output  # the unstaged edit stays out
    assert "HEAD" in output and "staged changes" in output
    assert "gpt-4o-mini" in (tmp_path / "answer.prompt.yaml").read_text()  # pre-commit restored the unstaged edit


def test_hook_passes_on_the_first_commit(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "answer.prompt.yaml").write_text(PROMPT)
    (tmp_path / ".pre-commit-config.yaml").write_text(hook_config())
    git(tmp_path, "add", "-A")
    done = subprocess.run([sys.executable, "-m", "pre_commit", "run", "promptops-cost"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env=git_env(PRE_COMMIT_HOME=str(tmp_path / "pc")))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "support.answer (added)" in done.stdout


def test_the_hook_imports_nothing_heavy(tmp_path: Path) -> None:
    """What the cost hook's speed rests on: no litellm (seconds), no GitPython, asyncio or multiprocessing."""
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "answer.prompt.yaml").write_text(PROMPT)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    (tmp_path / "answer.prompt.yaml").write_text(PROMPT.replace("max_tokens: 100", "max_tokens: 120"))
    git(tmp_path, "add", "-A")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "promptops", "cost", "--staged", "--warn"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=git_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert "support.answer" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert {"litellm", "git", "asyncio", "multiprocessing", "statistics", "importlib.metadata"} & imported == set()
    assert "tiktoken" in imported  # it did count
