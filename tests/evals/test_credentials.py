"""A missing API key is named before litellm is imported: our provider table agrees with litellm's own
check, and `promptops eval` stops on it at once, while --api-base needs no key at all."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers.cli import run_promptops_process
from helpers.repo import git, git_env
from promptops.evals.credentials import PROVIDER_KEYS, missing_credentials, provider_of
from promptops.models import ModelCatalog
from promptops.testing import StubServer

ALL_VARIABLES = sorted({name for ways in PROVIDER_KEYS.values() for way in ways for name in way})


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("provider", sorted(PROVIDER_KEYS))
def test_the_table_agrees_with_litellm(provider: str, no_keys: pytest.MonkeyPatch) -> None:
    from promptops.evals.runner import import_litellm

    litellm = import_litellm()
    model = f"{provider}/some-model"
    ours = missing_credentials([model])
    theirs = litellm.validate_environment(model)["missing_keys"]
    assert ours is not None and theirs, (ours, theirs)
    assert f"needs {PROVIDER_KEYS[provider][0][0]}" in ours
    assert set(PROVIDER_KEYS[provider][0]) <= set(theirs) or PROVIDER_KEYS[provider][0][0] in theirs
    for way in PROVIDER_KEYS[provider]:  # each way we accept, litellm accepts
        for name in way:
            no_keys.setenv(name, "k")
        assert missing_credentials([model]) is None
        assert litellm.validate_environment(model)["missing_keys"] == [], way
        for name in way:
            no_keys.delenv(name)


def test_bare_names_find_their_provider_in_the_price_map() -> None:
    catalog = ModelCatalog()
    assert provider_of("gpt-4o-mini", catalog) == "openai"
    assert provider_of("claude-sonnet-4-5", catalog) == "anthropic"
    assert provider_of("openai/ft:gpt-4o-mini-2024-07-18:acme:x:1", catalog) == "openai"
    assert provider_of("ollama/llama3", catalog) is None  # a local server: no key, left to litellm
    assert provider_of("meta-llama/Llama-3-8b", catalog) is None  # not a provider prefix
    assert provider_of("no-such-model", catalog) is None


def test_an_empty_key_is_no_key(no_keys: pytest.MonkeyPatch) -> None:
    no_keys.setenv("OPENAI_API_KEY", "  ")  # how GitHub Actions passes a secret a fork cannot see
    assert "needs OPENAI_API_KEY in the environment" in (missing_credentials(["openai/gpt-4o"]) or "")
    no_keys.setenv("GOOGLE_API_KEY", "k")
    assert missing_credentials(["gemini/gemini-2.5-pro"]) is None  # either of gemini's variables will do
    no_keys.delenv("GOOGLE_API_KEY")
    message = missing_credentials(["gemini/gemini-2.5-pro"]) or ""
    assert "needs GEMINI_API_KEY (or GOOGLE_API_KEY)" in message and "--api-base" in message
    no_keys.setenv("AZURE_API_KEY", "k")
    assert "needs AZURE_API_BASE and AZURE_API_VERSION" in (missing_credentials(["azure/my-gpt"]) or "")


# -- the command ------------------------------------------------------------------------------------

PROMPT = """\
id: hello
model: {name: anthropic/claude-sonnet-4-5, params: {max_tokens: 20}}
messages: [{role: user, content: "Say hello."}]
"""
SUITE = "prompt: hello\ncases:\n" + "".join(f"  - {{id: c{i}, assert: [{{type: contains, value: hello}}]}}\n"
                                             for i in range(3))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "hello.prompt.yaml").write_text(PROMPT)
    (tmp_path / "hello.eval.yaml").write_text(SUITE)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    return tmp_path


def _eval(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in git_env().items() if k not in ALL_VARIABLES and k != "PROMPTOPS_API_BASE"}
    env["PYTHONPROFILEIMPORTTIME"] = "1"  # -X importtime, inherited by worker processes too
    return run_promptops_process(["eval", "--all", "--no-base", *args], cwd=repo, env=env, timeout=180)


def _imported_litellm(stderr: str) -> bool:
    return any(line.startswith("import time:") and line.rstrip().endswith(" litellm") for line in stderr.splitlines())


def test_no_worker_process_starts_for_a_run_without_its_key(repo: Path, no_keys: pytest.MonkeyPatch) -> None:
    from promptops.config import load_workspace
    from promptops.evals.execute import EvalOptions, _WorkerStarter, settings_for
    from promptops.evals.runner import MissingCredentials
    from promptops.evals.suite import plan_side
    from promptops.resultcache import ResultCache

    workspace = load_workspace(repo)
    settings = settings_for(workspace, EvalOptions())
    with ResultCache(repo / "cache.db") as cache:
        side = plan_side(workspace.suites[0], workspace, cache, None, None)
        starter = _WorkerStarter(repo / "cache.db", settings, ModelCatalog(), requested=2)
        with pytest.raises(MissingCredentials, match="needs ANTHROPIC_API_KEY"):
            starter.planned(side)
    assert len(side.pending) == 3 and starter.pool is None  # workers would import litellm for nothing


@pytest.mark.parametrize("workers", ["0", "2"], ids=["in-process", "worker-processes"])
def test_eval_names_the_missing_key_without_importing_litellm(repo: Path, workers: str) -> None:
    done = _eval(repo, "--workers", workers)
    assert done.returncode == 2, done.stderr[-2000:]
    assert ("evals not run: anthropic/claude-sonnet-4-5 needs ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN) in the "
            "environment") in done.stderr
    assert not _imported_litellm(done.stderr)
    assert "Traceback" not in done.stderr


def test_a_server_of_your_own_needs_no_key(repo: Path) -> None:
    (repo / "hello.prompt.yaml").write_text(PROMPT.replace("anthropic/claude-sonnet-4-5", "openai/gpt-4o-mini"))
    with StubServer(default_reply="hello") as stub:
        done = _eval(repo, "--api-base", stub.base_url, "--workers", "0", "--format", "json")
    assert done.returncode == 0, done.stderr[-2000:]
    [suite] = json.loads(done.stdout)["suites"]
    assert suite["head"]["pass_rate"] == 1.0 and suite["head"]["calls"] == 3
