"""Environments on real git repositories: a repository with geo.capital and one suite, promote and read the lock
and the audit log, with one shared result cache (the release, release-runtime and state-attack tests)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from helpers.cli import run_promptops
from helpers.geo import PROMPT, SUITE
from helpers.repo import git, git_env
from promptops import lockfile, resources
from promptops.resultcache import ResultCache
from promptops.specs import content_version
from promptops.testing import StubServer
from promptops.yamlparse import parse

GOOD, BETTER, RUDE = "Answer with the city.", "Answer with the capital city.", "Answer rudely."


def write_prompt(root: Path, prompt_id: str, system: str, suite: bool = True) -> None:
    name = prompt_id.replace(".", "_")
    (root / f"{name}.prompt.yaml").write_text(PROMPT.replace("geo.capital", prompt_id).replace("SYSTEM", system))
    if suite:  # the eval command's suite, with a minimum pass rate: the gate a promotion checks head-only
        gated = SUITE.replace("geo.capital", prompt_id).replace("max_pass_rate_drop: 0.05", "pass_rate: 0.9")
        (root / f"{name}.eval.yaml").write_text(gated)


def commit(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)
    return git(root, "rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One result cache for the module's repositories (content-addressed, so sharing is safe): only the
    first promotion of a prompt text calls the stub, and the rest spare litellm's import."""
    return tmp_path_factory.mktemp("cache") / "cache.db"


def configure(root: Path, cache: Path, extra: str = "", eval_extra: str = "") -> None:
    (root / "promptops.yaml").write_text(f"eval: {{concurrency: 4{eval_extra}}}\n{extra}")
    share_cache(root, cache)


def share_cache(root: Path, cache: Path) -> None:
    """The module's one cache at the repository's default cache path, hard-linked (promptops.yaml may only name a
    cache inside the repository; the repositories run one after another), and kept out of git as a project's
    .gitignore would keep it."""
    target = root / ".promptops" / "cache.db"
    if target.exists():
        return
    with ResultCache(cache):  # created if new
        pass
    target.parent.mkdir(exist_ok=True)
    os.link(cache, target)
    with open(root / ".git" / "info" / "exclude", "a", encoding="utf-8") as exclude:
        exclude.write(".promptops/cache.db*\n")


def new_repo(root: Path, cache: Path) -> Path:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    configure(root, cache)
    write_prompt(root, "geo.capital", GOOD)
    write_prompt(root, "nosuite", GOOD, suite=False)
    commit(root, "base")
    return root


def env_without_key(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in git_env(**extra).items() if k not in ("OPENAI_API_KEY", "PROMPTOPS_API_BASE")}
    env["GITHUB_ACTOR"] = "release-tester"
    return env


def po(root: Path, *args: str, expect: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``promptops ARGS`` in ``root``, in-process (see tests/helpers/cli.py), without an API key by default."""
    done = run_promptops(args, cwd=root, env=env or env_without_key())
    assert done.returncode == expect, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return done


def promote(root: Path, stub: StubServer | None, prompt_id: str, env: str, *extra: str,
            expect: int = 0) -> subprocess.CompletedProcess[str]:
    api = ["--api-base", stub.base_url] if stub else []
    return po(root, "promote", prompt_id, "--to", env, *api, *extra, expect=expect)


def lock_of(root: Path) -> dict:
    data, _ = parse((root / lockfile.LOCK_NAME).read_text())
    Draft202012Validator(resources.schema("lock")).validate(data)
    return data


def version_of(root: Path, prompt_id: str) -> str:
    data, _ = parse((root / f"{prompt_id.replace('.', '_')}.prompt.yaml").read_text())
    return content_version(data)


def audit_of(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / lockfile.AUDIT_LOG).read_text().splitlines()]
