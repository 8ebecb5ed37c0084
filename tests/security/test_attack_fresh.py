"""A fresh attack run against `promptops ci` and the commands around it (issue 15, "Verified by").

Each test is an attack that works on the code as it stands, written as a test that fails until
it is fixed. They build the same simulated GitHub Actions job as tests/security/test_attack_sinks.py: a
real git repository, `promptops ci` as a subprocess, the stub model through litellm, FakeGitHub.
An attacker's server is a plain HTTP listener on loopback that records what reaches it.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from helpers.actions import PROMPT, TOKEN, actions_job, comment_body, repository
from helpers.cli import run_promptops_process
from promptops.testing import StubServer
from promptops.testing.github import FakeGitHub

BASE_SUITE = "prompt: support.greet\ncases: [{id: ada, vars: {name: ada}, assert: [{type: contains, value: hello}]}]\n"


@contextlib.contextmanager
def attacker_host(body: bytes = b'{"type": "string"}',
                  hang: threading.Event | None = None) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server of the pull request's author: its URL, and the paths requested from it.

    With ``hang``, a request gets no answer until the event is set (or the server stops).
    """
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            if hang is not None:
                hang.wait(30)
            with contextlib.suppress(OSError):  # the client may be gone (killed on a timeout)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        if hang is not None:
            hang.set()
        server.shutdown()
        server.server_close()


def ci(job, timeout: float = 60) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    return run_promptops_process(["ci", "--report-dir", job.temp / "report"], cwd=job.root, env=job.env,
                                 timeout=timeout)


# -- a suite's json_schema assertion resolves $ref over the network and the file system ---------------
# jsonschema, given no registry, still fetches remote $refs with urllib (a deprecated fallback):
# http(s) to any host and file:// anywhere on the runner.


def schema_suite(ref: str, gates: str = "{pass_rate: 1.0}") -> str:
    return ("prompt: support.greet\n"
            f"gates: {gates}\n"
            "cases:\n"
            f"  - {{id: ada, vars: {{name: ada}}, assert: [{{type: json_schema, schema: {{$ref: '{ref}'}}}}]}}\n")


def schema_repository(tmp_path: Path, ref: str, config: str = "eval: {concurrency: 2}\n") -> Path:
    """A repository whose pull request rewords the prompt and gives its suite a json_schema assertion with $ref."""
    return repository(tmp_path / "repo", {"promptops.yaml": config,
                                          "greet.prompt.yaml": PROMPT.replace("STYLE", "Be warm."),
                                          "greet.eval.yaml": BASE_SUITE},
                      {"greet.prompt.yaml": PROMPT.replace("STYLE", "Be warmer."),
                       "greet.eval.yaml": schema_suite(ref)})


def test_a_json_schema_ref_sends_no_request_to_the_authors_host(tmp_path: Path) -> None:
    with attacker_host() as (url, hits), StubServer(default_reply='"hello ada"') as stub:
        root = schema_repository(tmp_path, f"{url}/ping?run=check")
        with FakeGitHub(token=TOKEN) as github:
            ci(actions_job(tmp_path, root, github.api_url, stub))
        assert hits == [], f"promptops ci fetched {hits} from the pull request's host"


def test_a_json_schema_ref_reads_no_file_outside_the_repository(tmp_path: Path) -> None:
    outside = tmp_path / "runner-home" / "private.json"  # any JSON on the runner: a docker config, an event
    outside.parent.mkdir()
    outside.write_text(json.dumps({"enum": ["RUNNER-PRIVATE-VALUE"]}))
    with StubServer(default_reply='"hello ada"') as stub:
        root = schema_repository(tmp_path, outside.as_uri())
        with FakeGitHub(token=TOKEN) as github:
            job = actions_job(tmp_path, root, github.api_url, stub)
            done = ci(job)
            published = {"comment": comment_body(github), "stdout": done.stdout,
                         **{p.name: p.read_text() for p in (job.temp / "report").iterdir()}}
    leaked = [name for name, text in published.items() if "RUNNER-PRIVATE-VALUE" in text]
    assert leaked == [], f"a file outside the repository was read and published in {leaked}"


def test_a_json_schema_ref_to_a_silent_host_does_not_hang_the_check(tmp_path: Path) -> None:
    with attacker_host(hang=threading.Event()) as (url, hits), StubServer(default_reply='"hello ada"') as stub:
        root = schema_repository(tmp_path, f"{url}/tarpit", "eval: {concurrency: 2, timeout_s: 5}\n")
        with FakeGitHub(token=TOKEN) as github:
            job = actions_job(tmp_path, root, github.api_url, stub)
            ci(job, timeout=120)  # it waited on the tarpit for as long as the server kept the line open
        assert hits == [], f"promptops ci asked {hits} of the pull request's silent host"


# -- a judge's answer is read in quadratic time -------------------------------------------------------
# assertions._verdicts.find_json tries json.raw_decode at every "[" and "{": on an answer of brackets each try
# runs to the end, or a thousand levels deep, before it fails. 16 KB (what the stub sends within the
# judge's 4,096 tokens) costs over 3 s; every case with a model-judged assertion pays it again.

RUBRIC = "Grade the answer against the rubric"  # only the rubric judge's template says this


def test_a_judge_answer_of_brackets_does_not_stall_the_check(tmp_path: Path) -> None:
    from promptops.testing import Rule

    names = ["ada", "bob", "cy", "di"]
    suite = "prompt: support.greet\ncases:\n" + "".join(
        f"  - {{id: {n}, vars: {{name: {n}}}, assert: [{{type: llm_rubric, value: 'Is polite'}}]}}\n" for n in names)
    rules = [Rule(match=RUBRIC, reply="[" * 20_000)]  # cut by the stub to the judge's max_tokens
    with StubServer(rules=rules, default_reply="hello") as stub:
        root = repository(tmp_path / "repo", {"promptops.yaml": "eval: {concurrency: 4}\n",
                                              "greet.prompt.yaml": PROMPT.replace("STYLE", "Be warm."),
                                              "greet.eval.yaml": BASE_SUITE},
                          {"greet.prompt.yaml": PROMPT.replace("STYLE", "Be warmer."), "greet.eval.yaml": suite})
        with FakeGitHub(token=TOKEN) as github:
            job = actions_job(tmp_path, root, github.api_url, stub)
            try:
                ci(job, timeout=30)  # about 8 s with any other judge answer (more on a busy machine); 74 s with these
            except subprocess.TimeoutExpired:
                raise AssertionError("judge answers of brackets held promptops ci for more than 30 s") from None


# -- a prompt's inputs schema resolves $ref over the network in `promptops render` --------------------
# templating.validate_inputs (render, and an app's promptops.load(...).complete()) builds a
# jsonschema validator without a registry: a reviewer rendering a pull request's prompt calls out.


def test_render_sends_no_request_for_a_ref_in_the_inputs_schema(tmp_path: Path) -> None:
    from helpers.repo import git_env

    with attacker_host() as (url, hits):
        prompt = PROMPT.replace("STYLE", "Be warm.").replace("{name: {type: string}}",
                                                             f"{{name: {{$ref: '{url}/inputs.json'}}}}")
        root = repository(tmp_path / "repo", {"promptops.yaml": "{}\n", "README.md": "x\n"},
                          {"greet.prompt.yaml": prompt})
        env = {k: v for k, v in git_env().items() if not k.startswith(("GITHUB_", "OPENAI_", "PROMPTOPS_"))}
        run_promptops_process(["render", "support.greet", "--var", "name=ada"], cwd=root, env=env, timeout=60)
    assert hits == [], f"promptops render fetched {hits} from the pull request's host"


# -- a commit SHA from the pull request is a live link in the comment ---------------------------------
# GitHub links a bare 7-40 hex SHA, and owner/repo@SHA, to that commit, a fork's included (an
# "imposter commit" shown under the base repository's name). safety.inline breaks up mentions,
# issue references and URLs, not these.

SHA = "a5c3785ed8d6a35868bc169f07e40e889087fd2e"


def test_a_commit_sha_from_the_pull_request_is_no_live_link_in_the_comment(tmp_path: Path) -> None:
    from helpers.actions import visible_text

    prompt = PROMPT.replace("model:", "description: DESC\nmodel:")
    with StubServer(default_reply="hello ada") as stub:
        root = repository(tmp_path / "repo", {"promptops.yaml": "eval: {concurrency: 2}\n",
                                              "greet.prompt.yaml": prompt.replace("STYLE", "x").replace("DESC", "d"),
                                              "greet.eval.yaml": BASE_SUITE},
                          {"greet.prompt.yaml": prompt.replace("STYLE", "x").replace(
                              "DESC", f"'fixed in {SHA}, see acme/support-bot@{SHA[:7]}'")})
        with FakeGitHub(token=TOKEN) as github:
            ci(actions_job(tmp_path, root, github.api_url, stub))
            body = comment_body(github)
    assert SHA[:12] in body.replace("\u2060", "")  # the diff shows the description...
    text = visible_text(body)
    assert SHA not in text and f"@{SHA[:7]}" not in text, "a commit reference GitHub links"  # ...as plain text
