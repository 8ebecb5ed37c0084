"""Attacks on what a PR check publishes (issue 15, items 2 to 4): secrets in every sink, workflow
commands in the job's log, live mentions, references and links in the comment.

Each runs the real thing: `promptops ci` (or `eval`) as a subprocess on a real git repository, the
stub model server through litellm, FakeGitHub over HTTP, in the environment a GitHub Actions job
gives a step.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers.actions import (
    INJECTED,
    KEY,
    KEY_ANY_FORM,
    NAMES,
    PROMPT,
    TOKEN,
    actions_job,
    comment_body,
    repository,
    run,
    suite,
    visible_text,
    workflow_commands,
)
from helpers.repo import git_env, read_outputs
from promptops.testing import Rule, StubServer
from promptops.testing.github import FakeGitHub

# -- 2. no secret is published or stored -------------------------------------------------------------


def gateway(request: dict) -> str | None:
    """A gateway that quotes the organisation's key in its error, for one case at head."""
    text = request["messages"][-1]["content"]
    if "leaky" in request["messages"][0]["content"] and "Greet ken." in text:
        raise RuntimeError(f"upstream refused key {KEY}: quota exceeded")
    return None


@pytest.fixture(scope="module")
def echoing_stub():
    rules = [Rule(system="leaky", match=f"Greet {n}.", reply=f"Hello {n}! Your key is {KEY}, and *{KEY}*.")
             for n in NAMES[:3]]
    rules += [Rule(system="rude", reply="Go away.")]
    rules += [Rule(match=f"Greet {n}.", reply=f"Hello {n}, welcome!") for n in NAMES]
    with StubServer(rules=rules, responder=gateway) as stub:
        yield stub


def test_a_key_echoed_by_the_model_or_a_gateway_reaches_no_sink(tmp_path: Path, echoing_stub: StubServer) -> None:
    config = "eval: {concurrency: 4, retries: 0}\n"
    root = repository(tmp_path / "repo", {"promptops.yaml": config,
                                          "greet.prompt.yaml": PROMPT.replace("STYLE", "Be warm."),
                                          "greet.eval.yaml": suite()},
                      {"greet.prompt.yaml": PROMPT.replace("STYLE", "Be leaky.")})
    with FakeGitHub(token=TOKEN) as github:
        job = actions_job(tmp_path, root, github.api_url, echoing_stub)
        done = job.ci(expect=3, process=True)  # the gateway's error: a call got no answer
        sinks = {"comment": comment_body(github), "stdout": done.stdout, "stderr": done.stderr, **job.published()}
    assert "got no answer after retries" in sinks["report.json"]  # the error and the answers did arrive...
    assert "Your key is ***" in sinks["report.json"]
    for name, text in sinks.items():  # ...and the key is in none of them, in no escaped form
        assert not KEY_ANY_FORM.search(text), name

    # The gateway's refusal leaves a call unanswered: eval says so and exits 3, as ci does.
    evals = run(root, ["eval", "--base", "main", "--api-base", echoing_stub.base_url,
                       "--junit", str(tmp_path / "junit.xml")], job.env, expect=3, process=True)
    as_json = run(root, ["eval", "--base", "main", "--api-base", echoing_stub.base_url, "--format", "json",
                         "--output", str(tmp_path / "results.json")], job.env, expect=3, process=True)
    cache = (root / ".promptops" / "cache.db").read_bytes()  # CI caches upload it
    for name, text in {"eval stdout": evals.stdout + evals.stderr, "eval json": as_json.stdout + as_json.stderr,
                       "results.json": (tmp_path / "results.json").read_text(),
                       "junit": (tmp_path / "junit.xml").read_text(),
                       "cache": cache.decode("utf-8", "replace")}.items():
        assert not KEY_ANY_FORM.search(text), name
    assert "refused key ***" in evals.stdout and "Your key is ***" in (tmp_path / "results.json").read_text()


# -- 3. no workflow command from PR content ------------------------------------------------------------


def test_pr_content_starts_no_workflow_command_on_ci_output(tmp_path: Path, echoing_stub: StubServer) -> None:
    hostile_suite = INJECTED.format("suite") + ".eval.yaml"  # a file name, line breaks and all
    hostile_prompt = PROMPT.replace("support.greet", "broken.one").replace(
        "messages:", json.dumps({INJECTED.format("key"): 1}) .strip("{}") + "\nmessages:")  # a YAML key
    root = repository(tmp_path / "repo", {"promptops.yaml": "eval: {concurrency: 4}\n",
                                          "greet.prompt.yaml": PROMPT.replace("STYLE", "Be warm."),
                                          hostile_suite: suite()},
                      {"greet.prompt.yaml": PROMPT.replace("STYLE", "Be rude."), "broken.prompt.yaml": hostile_prompt})
    with FakeGitHub(token=TOKEN) as github:
        job = actions_job(tmp_path, root, github.api_url, echoing_stub)
        done = job.ci(expect=1, process=True)
    assert workflow_commands(done.stdout) == [] and workflow_commands(done.stderr) == []
    assert "x\\n::set-output" in done.stdout  # the reason is there, shown, not obeyed
    assert read_outputs(job.temp / "output")["verdict"] == "fail"


def test_reports_printed_by_other_commands_start_no_workflow_command(tmp_path: Path) -> None:
    """A workflow may print `promptops diff`, `cost`, `lint` or `render` in its log too."""
    prompt = PROMPT.replace("STYLE", "##[add-mask]{{ name }}")
    broken = PROMPT.replace("messages:", json.dumps({INJECTED.format("key"): 1}).strip("{}") + "\nmessages:")
    folder = INJECTED.format("folder")  # a folder name, line breaks and all
    root = repository(tmp_path / "repo", {"promptops.yaml": "eval: {concurrency: 2}\n",
                                          f"{folder}/greet.prompt.yaml": prompt},
                      {f"{folder}/greet.prompt.yaml": prompt.replace("temperature: 0", "temperature: 1"),
                       "broken.prompt.yaml": broken.replace("support.greet", "support.broken")})
    env = {k: v for k, v in git_env().items() if not k.startswith(("GITHUB_", "OPENAI_", "PROMPTOPS_"))}
    outputs = [run(root, ["diff", "--base", "main", *fmt], env, 0).stdout for fmt in ([], ["--format", "markdown"],
                                                                                     ["--format", "json"])]
    outputs += [run(root, ["cost", "--base", "main", *fmt], env, 0).stdout for fmt in ([], ["--format", "markdown"],
                                                                                     ["--format", "json"])]
    outputs += [run(root, ["lint", "--format", fmt], env, 1).stdout for fmt in ("text", "json", "sarif")]
    outputs.append(run(root, ["render", "support.greet", "--var", "name=##[stop-commands]x"], env, 0).stdout)
    assert "set-output" in outputs[0] and "stop-commands" in outputs[-1]  # shown...
    for text in outputs:  # ...never obeyed
        assert workflow_commands(text) == [], text
    assert json.loads(outputs[-1])["messages"][0]["content"] == "##[add-mask]##[stop-commands]x"  # JSON keeps its value


# -- 4. untrusted text stays inert in the comment ------------------------------------------------------

HOSTILE_FOLDER = "@acme/everyone/#12"
PARAMS_PROMPT = PROMPT.replace("max_tokens: 50}", "max_tokens: 50, stop: [STOP]}")


def test_a_hostile_folder_and_urls_in_params_stay_inert_in_the_whole_comment(tmp_path: Path,
                                                                             echoing_stub: StubServer) -> None:
    prompt = f"{HOSTILE_FOLDER}/greet.prompt.yaml"
    root = repository(tmp_path / "repo", {"promptops.yaml": "eval: {concurrency: 4}\n",
                                          prompt: PARAMS_PROMPT.replace("STOP", "'END'").replace("STYLE", "Be warm."),
                                          f"{HOSTILE_FOLDER}/greet.eval.yaml":
                                              suite(gates="{max_pass_rate_drop: 0.1}")},
                      {prompt: PARAMS_PROMPT.replace("STOP", "'see https://evil.example/x', 'www.evil.example'")
                       .replace("STYLE", "Be warm. Ask @acme/everyone about #12.")})
    with FakeGitHub(token=TOKEN) as github:
        job = actions_job(tmp_path, root, github.api_url, echoing_stub)
        job.ci(expect=0)
        body = comment_body(github)
    assert "everyone" in body and "evil.example" in body  # the diff shows both...
    text = visible_text(body)
    assert not re.search(r"@\w", text), "a live mention"  # ...and neither pings, links nor references
    assert not re.search(r"#\d|GH-\d", text, re.IGNORECASE), "a live issue reference"
    assert not re.search(r"\w+://|www\.", text), "a live autolink"
    assert "\\@" not in text and "\\#" not in text, "a backslash escape shown as it is"
