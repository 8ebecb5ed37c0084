"""The pre-commit hook, end to end, installed from the hook repository as ``pre-commit try-repo`` does.

try-repo installs the hook the way users get it: it clones the hook repository,
creates a virtualenv and pip-installs promptops with its dependencies from the
package index (litellm included), then runs the hook in a user's repository.

The hook repository is a snapshot of the working tree (tracked and new files,
minus what git ignores) committed into a temporary git repository. try-repo
itself only snapshots staged and modified tracked files, so a module a developer
has not added yet would be missing; the snapshot makes a test run see what is
on disk, and behave the same in a clean clone.

Cost: try-repo always builds its hook environment in a fresh temporary store
(pre_commit/commands/try_repo.py: ``Store(tempdir)``), about a minute each call.
So the tests do what try-repo does (write a config naming the hook repository at
its commit, then ``pre-commit run`` it) with one store for the whole test run:
the environment is built once, by the first run, and every other run reuses it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.repo import ROOT, git, git_env

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="pre-commit needs git")

HOOK_ID = "promptops-lint"

GOOD_PROMPT = """\
id: greet
description: Greet a customer by name.
model:
  name: openai/gpt-4o-mini
  params: {temperature: 0.2, max_tokens: 100}
inputs:
  type: object
  required: [name]
  properties:
    name: {type: string, maxLength: 100}
messages:
  - role: system
    content: You greet customers politely and briefly.
  - role: user
    content: "Say hello to {{ name }}."
"""

# Line 6 uses `company`, which `inputs` does not declare: PO202.
BROKEN_PROMPT = """\
id: broken
model: {name: openai/gpt-4o-mini}
inputs: {type: object, required: [name], properties: {name: {type: string}}}
messages:
  - role: user
    content: "Say hello to {{ name }} from {{ company }}."
"""

USER_REPO = {
    "promptops.yaml": "defaults: {model: openai/gpt-4o-mini}\n",
    "prompts/greet.prompt.yaml": GOOD_PROMPT,
    "prompts/broken.prompt.yaml": BROKEN_PROMPT,
    # Not prompt files: the hook's `files` pattern must leave them alone.
    "notes.yaml": "this: is: not valid yaml: [\n",
    "data/rows.jsonl": "{not json\n",
    "README.md": "A user's project.\n",
}


def load_hooks(path: Path) -> dict[str, dict]:
    from pre_commit.clientlib import load_manifest

    return {hook["id"]: hook for hook in load_manifest(str(path))}


def test_manifest_is_valid_and_selects_prompt_files():
    """Validated by pre-commit's own manifest loader; the pattern picks exactly our file kinds."""
    hook = load_hooks(ROOT / ".pre-commit-hooks.yaml")[HOOK_ID]
    assert hook["entry"] == "promptops lint"
    assert hook["language"] == "python"
    assert hook["require_serial"] is True
    assert hook["pass_filenames"] is True
    files = re.compile(hook["files"])
    for name in ("promptops.yaml", "sub/dir/promptops.yaml", "a.prompt.yaml", "prompts/support.answer.prompt.yaml",
                 "retrieval/kb.retrieval.yaml", "evals/answer.eval.yaml"):
        assert files.search(name), f"{name} should be linted"
    for name in ("notes.yaml", "notpromptops.yaml", "promptops.yaml.bak", ".prompt.yaml", "x/.eval.yaml",
                 "a.prompt.yml", "a.prompt.yaml.orig", "eval.yaml", "data/rows.jsonl", "data/rows.csv",
                 "promptops.lock.yaml"):
        assert not files.search(name), f"{name} should not be linted"


@pytest.fixture(scope="session")
def hook_repo(source_copy) -> Path:
    snapshot = source_copy()
    git(snapshot, "init", "-q")
    git(snapshot, "add", "-A")
    git(snapshot, "commit", "-q", "--no-verify", "-m", "snapshot of the working tree")
    return snapshot


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("user-repo")
    for name, text in USER_REPO.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text, encoding="utf-8")
    git(repo, "init", "-q")
    git(repo, "add", "-A")  # pre-commit only sees files git knows about
    return repo


@pytest.fixture(scope="session")
def hook_store(hook_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """try-repo's config for the hook repository at its commit, and a pre-commit store kept for the test run
    (never the user's own ~/.cache/pre-commit): the first run builds the hook's environment there."""
    home = tmp_path_factory.mktemp("pre-commit-home")
    rev = git(hook_repo, "rev-parse", "HEAD").strip()
    config = home / "try-repo.yaml"
    config.write_text(json.dumps({"repos": [{"repo": str(hook_repo), "rev": rev, "hooks": [{"id": HOOK_ID}]}]}))
    return config, home


def try_repo(hook_store: tuple[Path, Path], user_repo: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``pre-commit try-repo HOOK_REPO promptops-lint ARGS`` in ``user_repo``, with the session's store."""
    config, home = hook_store
    env = git_env(PRE_COMMIT_HOME=str(home), PRE_COMMIT_COLOR="never",
                  PROMPTOPS_CACHE_DIR=str(tmp_path / "promptops-cache"))
    for name in ("SKIP", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)  # SKIP=promptops-lint would skip the very hook under test
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--config", str(config), HOOK_ID, "--verbose", *args],
        cwd=user_repo, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800,
    )
    done.output = done.stdout + done.stderr  # type: ignore[attr-defined]
    return done


def test_try_repo_fails_on_a_broken_prompt(hook_store, user_repo, tmp_path):
    done = try_repo(hook_store, user_repo, tmp_path, "--all-files")
    output = done.output
    assert done.returncode == 1, output
    assert re.search(r"promptops lint\.+Failed", output), output
    assert re.search(r"prompts/broken\.prompt\.yaml:6:\d+: PO202 ", output), output
    findings = [line for line in output.splitlines() if re.match(r"\S+:\d+:\d+: PO\d{3} ", line)]
    assert all(line.startswith("prompts/broken.prompt.yaml:") for line in findings), findings
    assert "notes.yaml" not in output and "rows.jsonl" not in output, output
    assert "Traceback" not in output, output


def test_try_repo_passes_on_good_files(hook_store, user_repo, tmp_path):
    done = try_repo(hook_store, user_repo, tmp_path, "--files", "promptops.yaml", "prompts/greet.prompt.yaml")
    output = done.output
    assert done.returncode == 0, output
    assert re.search(r"promptops lint\.+Passed", output), output
