"""Issue 15, item 1: a pull request does not choose where secrets go, or what the safety limits are.

Each test is an attack that worked before the fix: a prompt's ``model.params.extra`` or model name
sending the calls (and the workflow's API key) to the author's server, a mock answer forging a
promotion's evidence, and a head promptops.yaml reading files outside the repository, writing the
cache anywhere or lifting the render limits of a PR check. Calls go through the real litellm path
to two stub servers on loopback: the workflow's (what --api-base names) and an attacker's.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpers.actions import NESTED_LOOP
from helpers.cli import run_promptops
from helpers.geo import COUNTRIES, PROMPT, SUITE
from helpers.repo import git, git_env
from promptops.testing import Rule, StubServer

KEY = "sk-workflow-secret-0123456789abcdef"  # the organisation's key, in the job's environment
EVERY_CITY = " ".join(COUNTRIES.values())  # one answer that passes every case of SUITE


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[StubServer, StubServer]]:
    rules = [Rule(match=country, reply=city) for country, city in COUNTRIES.items()]
    with StubServer(rules=rules) as workflow, StubServer(default_reply=EVERY_CITY) as attacker:
        yield workflow, attacker


@pytest.fixture
def workflow(servers: tuple[StubServer, StubServer]) -> StubServer:
    servers[0].reset(faults=[])
    return servers[0]


@pytest.fixture
def attacker(servers: tuple[StubServer, StubServer]) -> StubServer:
    servers[1].reset(faults=[])
    return servers[1]


def with_extra(extra: str, model: str = "openai/gpt-4o-mini") -> str:
    """geo.capital's prompt with these ``model.params.extra`` (flow YAML) and model name."""
    return PROMPT.replace("SYSTEM", "Answer with the city.").replace(
        "model: {name: openai/gpt-4o-mini, params: {temperature: 0, max_tokens: 20}}",
        f'model: {{name: "{model}", params: {{temperature: 0, max_tokens: 20, extra: {extra}}}}}')


def new_repo(root: Path, config: str = "eval: {concurrency: 4}\n", gate: str = "max_pass_rate_drop: 0.05") -> Path:
    """A git repository whose main branch holds geo.capital and its suite; the work goes on branch 'change'."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    files = {"promptops.yaml": config, "geo.prompt.yaml": PROMPT.replace("SYSTEM", "Answer with the city."),
             "geo.eval.yaml": SUITE.replace("max_pass_rate_drop: 0.05", gate)}
    for name, text in files.items():
        (root / name).write_text(text)
    (root / ".git" / "info" / "exclude").write_text(".promptops/\n")
    commit(root, "base")
    git(root, "switch", "-qc", "change")
    return root


def commit(root: Path, message: str, **files: str) -> None:
    for name, text in files.items():
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)


def promptops(root: Path, *args: str, expect: int, timeout: float = 300,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in git_env().items() if not k.startswith(("GITHUB_", "PROMPTOPS_", "OPENAI_"))}
    environment["OPENAI_API_KEY"] = KEY
    environment.update(env or {})
    done = run_promptops(args, cwd=root, env=environment, timeout=timeout)
    assert done.returncode == expect, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return done


def report(root: Path) -> dict[str, Any]:
    return json.loads((root / ".promptops" / "report" / "report.json").read_text())


# -- endpoints and keys: model.params.extra and model names --------------------------------------------

@pytest.mark.parametrize("key", ["base_url", "api_base"])
def test_a_pr_cannot_send_the_calls_and_the_key_to_its_own_server(tmp_path: Path, workflow: StubServer,
                                                                  attacker: StubServer, key: str) -> None:
    repo = new_repo(tmp_path / "repo")
    commit(repo, "send it home", **{"geo.prompt.yaml": with_extra(f"{{{key}: '{attacker.base_url}'}}")})
    promptops(repo, "ci", "--api-base", workflow.base_url, expect=1)
    assert attacker.calls == 0  # no request, so no Authorization header with the key either
    assert workflow.calls == 0  # the prompt's suite is not run at all: its calls could only go astray
    data = report(repo)
    assert [(f["path"], f["code"]) for f in data["lint"]["findings"]] == [("geo.prompt.yaml", "PO604")]
    assert f"'{key}' chooses where the request" in data["lint"]["findings"][0]["message"]
    assert any(reason.startswith("geo.eval.yaml: not run: geo.prompt.yaml:") for reason in data["evals"]["skipped"])


@pytest.mark.parametrize(("model", "extra"), [
    ("openai/gpt-4o-mini", "{base_url: ATTACKER}"),
    ("openai/gpt-4o-mini", "{api_base: ATTACKER, api_key: sk-attacker}"),
    ("openai/gpt-4o-mini", "{extra_headers: {Host: attacker}, mock_response: Paris}"),
    ("oobabooga/ATTACKER_ROOT", "{}"),  # litellm sends oobabooga calls to a URL in the model name, over --api-base
], ids=["base_url", "api_base+api_key", "headers+mock", "model-url"])
def test_the_runner_never_sends_a_refused_call(tmp_path: Path, workflow: StubServer, attacker: StubServer,
                                              model: str, extra: str) -> None:
    from promptops.evals.runner import Call, RunSettings, run_calls
    from promptops.resultcache import ResultCache
    from promptops.yamlparse import parse

    root = attacker.base_url.removesuffix("/v1")
    params = {"temperature": 0, "extra": parse(extra.replace("ATTACKER", attacker.base_url))[0]}
    call = Call("k1", "geo.capital", "v1", "france", 0, model.replace("ATTACKER_ROOT", root),
                [{"role": "user", "content": "What is the capital of France?"}], params)
    settings = RunSettings(api_base=workflow.base_url, api_key=KEY, retries=0, timeout_s=10)
    with ResultCache(tmp_path / "cache.db") as cache:
        [outcome] = asyncio.run(run_calls([call], cache, settings))
        assert cache.get("k1") is None
    assert attacker.calls == 0 and workflow.calls == 0
    assert outcome.output is None and outcome.attempts == 0  # mock_response would have "answered" here
    assert outcome.error and outcome.error.startswith("not sent: ")


@pytest.mark.parametrize("key", ["api_base", "base_url", "api_key", "api_version", "organization",
                                 "custom_llm_provider",
                                 "mock_response", "mock_tool_calls", "input_cost_per_token", "output_cost_per_token",
                                 "success_callback", "callbacks", "metadata", "litellm_logging_obj", "fallbacks",
                                 "model_list", "extra_headers", "extra_body", "aws_secret_access_key",
                                 "vertex_credentials", "azure_ad_token", "client", "caching", "num_retries",
                                 "timeout", "max_tokens", "n", "stream", "tools", "some_future_knob"])
def test_provider_params_refuse_anything_off_the_allowlist(key: str) -> None:
    from promptops.evals.runner import provider_params

    with pytest.raises(ValueError, match=f"'{key}'"):
        provider_params({"temperature": 0, "extra": {key: "x"}})


def test_provider_params_pass_the_allowlist() -> None:
    from promptops.evals.runner import provider_params

    extra = {"response_format": {"type": "json_object"}, "logit_bias": {"50256": -100}, "logprobs": True,
             "top_logprobs": 2, "top_k": 40, "reasoning_effort": "low", "user": "tester"}
    params = {"temperature": 0, "max_tokens": 20, "timeout_s": 5, "extra": extra}
    assert provider_params(params) == {"temperature": 0, "max_tokens": 20, "timeout": 5.0, **extra}


def test_the_schema_documents_the_allowlist() -> None:
    from promptops import resources
    from promptops.modelparams import EXTRA_ALLOWED

    extra = resources.schema("prompt")["properties"]["model"]["properties"]["params"]["properties"]["extra"]
    assert set(extra["properties"]) == set(EXTRA_ALLOWED)
    assert all(name in extra["description"] for name in EXTRA_ALLOWED)


def test_an_app_never_sends_a_released_prompts_refused_params(workflow: StubServer, attacker: StubServer) -> None:
    from promptops.loader import build_prompt
    from promptops.release.runtime import Prompt
    from promptops.specs import Source

    data = {"id": "geo.capital", "model": {"name": "openai/gpt-4o-mini",
                                           "params": {"extra": {"base_url": attacker.base_url}}},
            "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    spec = build_prompt(data, Source(Path("geo.prompt.yaml"), "geo.prompt.yaml"), [])
    prompt = Prompt("geo.capital", "v1", "prod", "0" * 40, spec)
    with pytest.raises(ValueError, match="'base_url'"):
        prompt.complete(api_base=workflow.base_url, api_key=KEY, num_retries=0)
    assert attacker.calls == 0 and workflow.calls == 0


def test_a_judge_model_that_is_a_url_gets_no_embedding_request(tmp_path: Path, attacker: StubServer) -> None:
    from promptops.evals.assertions import Answer, Assertion
    from promptops.evals.judges import judge
    from promptops.evals.runner import RunSettings
    from promptops.resultcache import ResultCache

    assertion = Assertion.from_dict({"type": "similar", "value": "Paris", "model": f"huggingface/{attacker.base_url}"})
    with ResultCache(tmp_path / "cache.db") as cache:
        result = asyncio.run(judge(assertion, Answer("Paris", 1.0, 0.0), {}, None, question=None, passages=None,
                                   judge_model="openai/gpt-4o-mini", embedding_model="openai/text-embedding-3-small",
                                   cache=cache, settings=RunSettings(retries=0, timeout_s=10), prompt_id="p",
                                   case_id="c"))
    assert attacker.calls == 0
    assert not result.outcome.passed and "holds a URL" in result.outcome.reason


def test_lint_names_every_model_that_is_a_url(tmp_path: Path) -> None:
    from promptops.lint import lint

    (tmp_path / "promptops.yaml").write_text("defaults:\n  judge: oobabooga/http://example.net:5000\n")
    (tmp_path / "geo.prompt.yaml").write_text(PROMPT.replace("SYSTEM", "Answer."))
    (tmp_path / "geo.eval.yaml").write_text(
        "prompt: geo.capital\ncases:\n  - id: one\n    vars: {country: France}\n    assert:\n"
        "      - {type: llm_rubric, value: names Paris, model: 'huggingface/https://example.net'}\n")
    run = lint([Path(".")], cwd=tmp_path)
    found = sorted((f.path, f.line, f.code) for f in run.findings if f.code == "PO605")
    assert found == [("geo.eval.yaml", 6, "PO605"), ("promptops.yaml", 2, "PO605")]


def test_litellm_loads_no_env_file_from_the_checkout(tmp_path: Path, attacker: StubServer) -> None:
    """litellm's import loads a .env found from its own folder up (a virtualenv inside the checkout), or from
    the current folder under a tracer (coverage, a debugger): the pull request's .env would set the endpoint."""
    (tmp_path / ".env").write_text(f"OPENAI_BASE_URL={attacker.base_url}\nOPENAI_API_BASE={attacker.base_url}\n")
    script = textwrap.dedent("""
        import os, sys
        sys.settrace(lambda *args: None)  # as coverage or a debugger would
        from promptops.evals.runner import import_litellm
        import_litellm()
        print(os.environ.get("OPENAI_BASE_URL"), os.environ.get("OPENAI_API_BASE"))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LITELLM_MODE"))}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None"]


# -- evidence: a made-up answer cannot pass the gates ----------------------------------------------------

def test_mock_response_cannot_forge_promotion_evidence(tmp_path: Path, workflow: StubServer) -> None:
    repo = new_repo(tmp_path / "repo", gate="pass_rate: 1.0")
    git(repo, "switch", "-q", "main")
    commit(repo, "pass without a model", **{"geo.prompt.yaml": with_extra(f"{{mock_response: '{EVERY_CITY}'}}")})
    done = promptops(repo, "promote", "geo.capital", "--to", "dev", "--api-base", workflow.base_url, expect=1)
    assert "mock_response" in done.stderr + done.stdout
    assert not (repo / "promptops.lock.yaml").exists() and not (repo / ".promptops" / "audit.log").exists()
    assert workflow.calls == 0


# -- files: paths.include and eval.cache stay inside the project -------------------------------------------

@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the repository, holding a prompt that must never be read through promptops.yaml."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "stolen.prompt.yaml").write_text("id: stolen\nmodel: {name: openai/gpt-4o-mini}\n"
                                               "messages: [{role: user, content: from outside}]\n")
    return folder


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_paths_include_cannot_read_outside_the_project(tmp_path: Path, outside: Path, how: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from promptops.cli import cli

    repo = tmp_path / "repo"
    repo.mkdir()
    folder = {"absolute": str(outside), "dotdot": "../outside", "symlink": "shared"}[how]
    if how == "symlink":
        (repo / "shared").symlink_to(outside)
    (repo / "promptops.yaml").write_text(f"paths:\n  include: ['{folder}']\n")
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(cli, ["render", "stolen"])
    assert result.exit_code == 2, result.output
    assert "promptops.yaml:2:" in result.output and "paths.include[0]" in result.output
    assert "from outside" not in result.output


def test_paths_include_root_does_not_walk_the_file_system(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "promptops.yaml").write_text("paths: {include: ['/']}\n")
    done = run_promptops(["render", "anything"], cwd=repo, env=git_env())
    assert done.returncode == 2 and "paths.include[0]: '/' is an absolute path" in done.stderr, done.stderr


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlinked-default", "git", "symlinked-into-git"])
def test_the_eval_cache_stays_inside_the_project(tmp_path: Path, workflow: StubServer, how: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache = {"absolute": str(elsewhere / "x.db"), "dotdot": "../elsewhere/x.db", "symlinked-default": None,
             "git": ".git/x.db", "symlinked-into-git": None}[how]
    config = "eval: {concurrency: 4" + (f", cache: '{cache}'" if cache else "") + "}\n"
    repo = new_repo(tmp_path / "repo", config)
    if how.startswith("symlinked"):  # .promptops committed as a link out of the repository, or into .git
        (repo / ".git" / "info" / "exclude").write_text("")
        (repo / ".promptops").symlink_to(elsewhere if how == "symlinked-default" else Path(".git"))
        commit(repo, "link")
    done = promptops(repo, "eval", "--no-base", "--api-base", workflow.base_url, expect=2)
    assert "promptops.yaml:1:" in done.stderr and "the cache must sit inside the project" in done.stderr
    assert list(elsewhere.iterdir()) == [] and not (repo / ".git" / "x.db").exists()
    assert not (repo / ".git" / "cache.db").exists()
    assert workflow.calls == 0


# -- the PR check: settings that guard the run come from the base ------------------------------------------

def test_ci_takes_render_limits_from_the_base(tmp_path: Path) -> None:
    """The base lowered a limit; the head drops that line (back to the default) and loops past it."""
    repo = new_repo(tmp_path / "repo", "lint: {render_limits: {max_loop_iterations: 1000}}\n")
    looping = PROMPT.replace("SYSTEM", f"Answer with the city.{NESTED_LOOP}")
    commit(repo, "lift the limit", **{"promptops.yaml": "eval: {concurrency: 4}\n", "geo.prompt.yaml": looping})
    promptops(repo, "ci", "--no-eval", expect=1)
    findings = report(repo)["lint"]["findings"]
    assert any(f["code"] in ("PO205", "PO206") and "1,000 loop iterations" in f["message"] for f in findings), findings


def test_a_head_cannot_raise_render_limits_above_the_defaults(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo")
    looping = PROMPT.replace("SYSTEM", "{% for i in range(400) %}{% for j in range(400) %}{% endfor %}{% endfor %}")
    commit(repo, "lift the limit", **{"geo.prompt.yaml": looping,
                                      "promptops.yaml": "lint:\n  render_limits: {max_loop_iterations: 100000000}\n"})
    # Linted alone, the head's promptops.yaml is unusable input (exit 2); in the PR check it is one more
    # file under check: a finding that fails the check, which goes on with the base's settings.
    alone = promptops(repo, "lint", expect=2)
    assert "promptops.yaml:2:" in alone.stdout + alone.stderr
    promptops(repo, "ci", "--no-eval", expect=1)
    findings = report(repo)["lint"]["findings"]
    assert any(f["path"] == "promptops.yaml" and f["line"] == 2 and "greater than the maximum of 100000" in f["message"]
               for f in findings), findings
    assert any(f["code"] in ("PO205", "PO206") for f in findings), findings  # the loops meet the default limit


@pytest.mark.parametrize("command", ["ci", "eval"])
def test_the_base_chooses_where_the_cache_is_written(tmp_path: Path, workflow: StubServer, command: str) -> None:
    repo = new_repo(tmp_path / "repo", "eval: {concurrency: 4, cache: .promptops/base.db}\n")
    commit(repo, "my own cache", **{"promptops.yaml": "eval: {concurrency: 4, cache: .promptops/head.db}\n",
                                    "geo.prompt.yaml": PROMPT.replace("SYSTEM", "Answer with the capital city.")})
    args = ["--base", "main"] if command == "eval" else []
    promptops(repo, command, *args, "--api-base", workflow.base_url, expect=0)
    assert workflow.calls == 16  # both sides ran
    assert (repo / ".promptops" / "base.db").exists() and not (repo / ".promptops" / "head.db").exists()


def test_a_pr_cannot_make_a_known_model_free_to_call(tmp_path: Path, workflow: StubServer) -> None:
    """A price of zero for a model the price map knows would let every call past the spend cap."""
    repo = new_repo(tmp_path / "repo", "eval: {concurrency: 1, max_cost_usd: 0.00002}\n")
    free = ("eval: {concurrency: 1}\npricing:\n  openai/gpt-4o-mini: {input: 0, output: 0}\n"
            "  acme/ft-1: {input: 1, output: 2}\n")
    commit(repo, "free calls", **{"promptops.yaml": free,
                                  "geo.prompt.yaml": PROMPT.replace("SYSTEM", "Answer with the capital city.")})
    promptops(repo, "ci", "--api-base", workflow.base_url, expect=1)
    assert any("the spend cap stopped" in reason for reason in report(repo)["verdict"]["failures"])
    assert workflow.calls < 16  # the cap held at the price map's prices

    from promptops.config import guarded_by
    from promptops.specs import ProjectConfig

    head = ProjectConfig(root=repo, raw={"pricing": {"openai/gpt-4o-mini": {"input": 0, "output": 0},
                                                     "acme/ft-1": {"input": 1, "output": 2}}})
    # The new fine-tune's price stays (nothing else knows it); the known model's is the trusted side's.
    assert guarded_by(head, ProjectConfig(root=repo, raw={})).pricing == {"acme/ft-1": {"input": 1, "output": 2}}
