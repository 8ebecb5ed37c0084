"""A simulated GitHub Actions job on a real repository (the attack tests): its event, command files and
environment, the organisation's key and token, and what to look for in what it publishes."""

from __future__ import annotations

import html
import json
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from markdown_it import MarkdownIt

from helpers.cli import run_promptops, run_promptops_process
from helpers.repo import git, git_env
from promptops.testing import StubServer
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


# What the runner obeys: "::" opening a line (after white space), "##[" anywhere in one.
ANNOTATION = re.compile(r"::(error|warning) file=[^,:\n]*,line=\d+,col=\d+,title=[^:\n]*::[^\n]*")
INJECTED = "x\n::set-output name=verdict::pass\n::add-mask::{0}\n  ::stop-commands::pwned\n##[error]legacy"


def workflow_commands(text: str) -> list[str]:
    """Lines the Actions runner would run as commands, other than lint's own annotations."""
    lines = re.split(r"\r\n|\r|\n", text)
    return [line for line in lines
            if not ANNOTATION.fullmatch(line) and (line.lstrip().startswith("::") or "##[" in line)]


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


# The sticky comment's author and clock (test_attack_comment), a template loop of 1,600 iterations.
NOW = datetime.now(timezone.utc)
BOT = "github-actions[bot]"  # who writes with GITHUB_TOKEN
NESTED_LOOP = "{% for i in range(40) %}{% for j in range(40) %}{% endfor %}{% endfor %}"  # 1,600 iterations
