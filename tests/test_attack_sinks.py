"""Attacks on what a PR check publishes (issue 15, items 2 to 4): secrets in every sink, workflow
commands in the job's log, live mentions, references and links in the comment.

Each runs the real thing: `promptops ci` (or `eval`) as a subprocess on a real git repository, the
stub model server through litellm, FakeGitHub over HTTP, in the environment a GitHub Actions job
gives a step.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from _promptops import run_promptops, run_promptops_process
from conftest import git, git_env, read_outputs
from promptops.testing import Rule, StubServer
from promptops.testing.github import FakeGitHub

OWNER_REPO, PR = "acme/support-bot", 42
TOKEN = "ghs_" + "Tk3nValue" * 4
# Shaped like no well-known token, with underscores as real keys have: only knowing the value redacts it.
KEY = "org_live_7f3a_9c2e_41bd_5e6f"
# The key in any escaped form a renderer may give it: its parts in order, anything short between them.
KEY_ANY_FORM = re.compile(r"7f3a.{1,8}?9c2e.{1,8}?41bd.{1,8}?5e6f")
PROMPT = """\
id: support.greet
model: {name: openai/gpt-4o-mini, params: {temperature: 0, max_tokens: 50}}
inputs: {type: object, required: [name], properties: {name: {type: string}}}
messages:
  - {role: system, content: "STYLE"}
  - {role: user, content: "Greet {{ name }}."}
"""
NAMES = ["ada", "grace", "linus", "ken"]


def suite(prompt_id: str = "support.greet", gates: str = "{pass_rate: 1.0}") -> str:
    return f"prompt: {prompt_id}\ngates: {gates}\ncases:\n" + "".join(
        f"  - {{id: {n}, vars: {{name: {n}}}, assert: [{{type: icontains, value: 'hello {n}'}}]}}\n" for n in NAMES)


@dataclass
class Job:
    """A GitHub Actions step's world: the event, its command files, the API, the model server."""

    root: Path
    temp: Path
    env: dict[str, str]

    def ci(self, *args: str, expect: int, timeout: float = 300,
           process: bool = False) -> subprocess.CompletedProcess[str]:
        return run(self.root, ["ci", "--report-dir", str(self.temp / "report"), "--sarif",
                               str(self.temp / "report" / "lint.sarif"), *args], self.env, expect, timeout, process)

    def published(self) -> dict[str, str]:
        """Every text the step left behind: report files, the step summary, $GITHUB_OUTPUT."""
        texts = {path.name: path.read_text(encoding="utf-8") for path in (self.temp / "report").iterdir()}
        texts["step summary"] = (self.temp / "summary.md").read_text(encoding="utf-8")
        texts["outputs"] = (self.temp / "output").read_text(encoding="utf-8")
        return texts


def run(root: Path, args: list[str], env: dict[str, str], expect: int, timeout: float = 300,
        process: bool = False) -> subprocess.CompletedProcess[str]:
    """``promptops ARGS`` in-process, or with ``process`` in a child whose whole output is checked: what a
    CI log shows includes anything a library (litellm) prints on its own."""
    if process:
        done = run_promptops_process(args, cwd=root, env=env, timeout=timeout)
    else:
        done = run_promptops(args, cwd=root, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == expect, done.stdout + done.stderr
    return done


def repository(root: Path, files: dict[str, str], head: dict[str, str]) -> Path:
    """A git repository whose main holds ``files`` and whose branch ``feature`` changes ``head``."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    git(root, "switch", "-qc", "feature")
    for name, text in head.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "head")
    return root


def actions_job(tmp_path: Path, root: Path, api_url: str, stub: StubServer | None, **extra: str) -> Job:
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    base, head = git(root, "rev-parse", "main").strip(), git(root, "rev-parse", "HEAD").strip()
    event = {"number": PR, "pull_request": {
        "number": PR, "html_url": f"https://github.com/{OWNER_REPO}/pull/{PR}",
        "base": {"ref": "main", "sha": base, "repo": {"full_name": OWNER_REPO}},
        "head": {"ref": "feature", "sha": head, "repo": {"full_name": OWNER_REPO}}}}
    (temp / "event.json").write_text(json.dumps(event))
    (temp / "summary.md").touch()
    (temp / "output").touch()
    env = {k: v for k, v in git_env().items() if not k.startswith(("GITHUB_", "OPENAI_", "PROMPTOPS_"))}
    env.update(GITHUB_ACTIONS="true", CI="true", GITHUB_EVENT_NAME="pull_request",
               GITHUB_EVENT_PATH=str(temp / "event.json"), GITHUB_REPOSITORY=OWNER_REPO, GITHUB_API_URL=api_url,
               GITHUB_SERVER_URL="https://github.com", GITHUB_RUN_ID="7001", GITHUB_RUN_ATTEMPT="1",
               GITHUB_BASE_REF="main", GITHUB_STEP_SUMMARY=str(temp / "summary.md"),
               GITHUB_OUTPUT=str(temp / "output"), GITHUB_WORKSPACE=str(root), GITHUB_TOKEN=TOKEN,
               OPENAI_API_KEY=KEY)
    if stub is not None:
        env["PROMPTOPS_API_BASE"] = stub.base_url
    env.update(extra)
    return Job(root, temp, env)


def comment_body(github: FakeGitHub) -> str:
    [comment] = github.comments(OWNER_REPO, PR)
    return comment["body"]


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

# What the runner obeys: "::" opening a line (after white space), "##[" anywhere in one.
ANNOTATION = re.compile(r"::(error|warning) file=[^,:\n]*,line=\d+,col=\d+,title=[^:\n]*::[^\n]*")
INJECTED = "x\n::set-output name=verdict::pass\n::add-mask::{0}\n  ::stop-commands::pwned\n##[error]legacy"


def workflow_commands(text: str) -> list[str]:
    """Lines the Actions runner would run as commands, other than lint's own annotations."""
    lines = re.split(r"\r\n|\r|\n", text)
    return [line for line in lines
            if not ANNOTATION.fullmatch(line) and (line.lstrip().startswith("::") or "##[" in line)]


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


def visible_text(body: str) -> str:
    """What GitHub's mention, issue-reference and autolink filters see in a comment: the text of
    everything outside code fences, with character references decoded."""
    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(body)

    def walk(items):  # noqa: ANN001, ANN202
        for token in items:
            if token.type in ("fence", "code_block", "code_inline"):
                continue
            yield token
            yield from walk(token.children or [])

    kept = list(walk(tokens))
    assert not [t for t in kept if t.type in ("link_open", "image")], "a live link"
    return "\n".join(html.unescape(t.content) for t in kept if t.type in ("text", "html_block", "html_inline"))


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
