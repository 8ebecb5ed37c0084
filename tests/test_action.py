"""action.yml: valid against GitHub's Action metadata schema, fork-safe in how it handles input,
and its run steps executed as a GitHub Actions job would, on a pull_request event, against a local
fake of the GitHub REST API and the stub model server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

from helpers.repo import ROOT, git, git_env, read_outputs
from promptops.testing import Rule, StubServer
from promptops.testing.github import FakeGitHub

ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
TOKEN = "ghs_faketoken1234567890abcdef"
API_KEY = "sk-test-9f8e7d6c5b4a39281706"
OWNER_REPO = "acme/support-bot"
PROMPT = """\
id: support.greet
model: {name: openai/gpt-4o-mini, params: {temperature: 0, max_tokens: 50}}
inputs: {type: object, required: [name], properties: {name: {type: string}}}
messages:
  - {role: system, content: "STYLE"}
  - {role: user, content: "Greet {{ name }}."}
"""
NAMES = ["ada", "grace", "linus", "barbara", "ken", "margaret"]
SUITE = "prompt: support.greet\ngates: {max_pass_rate_drop: 0.1}\ncases:\n" + "".join(
    f"  - {{id: {n}, vars: {{name: {n}}}, assert: [{{type: icontains, value: 'hello {n}'}}]}}\n" for n in NAMES)
HOSTILE = ("@octocat and @acme/security-team please look. <img src=x onerror=alert(1)> </details> "
           "<script>x()</script>\n"
           "```\n# injected heading\n``` ~~~ [click](javascript:alert(1)) " + API_KEY + " " + "A" * 100_000)


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, timeout=120)


def test_action_and_init_workflow_are_valid_against_githubs_schemas(tmp_path: Path) -> None:
    assert check_jsonschema("vendor.github-actions", ROOT / "action.yml").returncode == 0
    workflow = ROOT / "templates/init/.github/workflows/promptops.yml"
    assert check_jsonschema("vendor.github-workflows", workflow).returncode == 0
    broken = tmp_path / "action.yml"  # the check can fail: a composite step without a shell
    broken.write_text((ROOT / "action.yml").read_text().replace("      shell: bash\n", "", 1))
    assert check_jsonschema("vendor.github-actions", broken).returncode != 0


def test_action_declares_the_documented_inputs_and_outputs() -> None:
    assert set(ACTION["inputs"]) == {"github-token", "base-ref", "config", "fail-on", "comment", "eval",
                                     "concurrency", "max-cost", "comment-author"}
    assert {"verdict", "pass-rate", "cost-delta-monthly", "report-path"} <= set(ACTION["outputs"])
    assert ACTION["runs"]["using"] == "composite"


def test_no_expression_is_expanded_inside_a_shell_script() -> None:
    for step in ACTION["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step["name"]


# -- the simulated job ----------------------------------------------------------------------


@dataclass
class Job:
    """What a runner gives a job: a workspace, a temp folder, the event, and its command files."""

    workspace: Path
    temp: Path
    env: dict[str, str]
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)

    def run_action(self, inputs: dict[str, str]) -> int:
        """Every step of action.yml in order, as the runner would; the first failing exit code, or 0."""
        values = {"github.token": TOKEN, "runner.temp": str(self.temp)}
        values.update({f"inputs.{name}": expand(str(spec.get("default", "")), values)
                       for name, spec in ACTION["inputs"].items()})
        values.update({f"inputs.{name}": value for name, value in inputs.items()})
        failed = 0
        for step in ACTION["runs"]["steps"]:
            if "uses" in step:
                assert step["uses"].startswith("actions/upload-artifact@")
                assert expand(step["with"]["path"], values) == str(self.temp / "promptops-report")
                continue
            code = self._run_step(step, values)
            failed = failed or code
            if code:
                break
        return failed

    def _run_step(self, step: dict, values: dict[str, str]) -> int:
        output = self.temp / f"output-{len(self.outputs)}"
        output.write_text("")
        env = {**self.env, **{name: expand(str(value), values) for name, value in step.get("env", {}).items()},
               "GITHUB_OUTPUT": str(output)}
        done = subprocess.run(["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", step["run"]],
                              cwd=self.workspace, env=env, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
        self.logs.append(done.stdout + done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        self.outputs[step.get("id", step["name"])] = read_outputs(output)
        return done.returncode


def expand(text: str, values: dict[str, str]) -> str:
    """${{ expr }} for the few expressions action.yml may use in env: and with: (any other fails the test)."""
    return EXPRESSION.sub(lambda m: values[m.group(1)], text)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "promptops.yaml").write_text("eval: {concurrency: 4}\nusage: {support.greet: {calls_per_day: 500}}\n")
    (root / "greet.prompt.yaml").write_text(PROMPT.replace("STYLE", "Be warm."))
    (root / "greet.eval.yaml").write_text(SUITE)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    git(root, "switch", "-qc", "feature")
    return root


def push(root: Path, style: str) -> None:
    (root / "greet.prompt.yaml").write_text(PROMPT.replace("STYLE", style))
    git(root, "commit", "-qam", f"style: {style[:20]}")


def make_job(tmp_path: Path, workspace: Path, api_url: str, stub: StubServer, fork: bool = False) -> Job:
    temp = tmp_path / "runner-temp"
    temp.mkdir(exist_ok=True)
    head = git(workspace, "rev-parse", "HEAD").strip()
    base = git(workspace, "rev-parse", "main").strip()
    head_repo = "someone/support-bot" if fork else OWNER_REPO
    event = {"action": "synchronize", "number": 42, "pull_request": {
        "number": 42, "html_url": f"https://github.com/{OWNER_REPO}/pull/42",
        "base": {"ref": "main", "sha": base, "repo": {"full_name": OWNER_REPO}},
        "head": {"ref": "feature", "sha": head, "repo": {"full_name": head_repo}}},
        "repository": {"full_name": OWNER_REPO}}
    event_path = temp / "event.json"
    event_path.write_text(json.dumps(event))
    summary = temp / "step-summary.md"
    summary.touch()
    bin_dir = str(Path(sys.executable).parent)  # promptops is installed here: the action reuses it
    env = {k: v for k, v in git_env().items() if not k.startswith(("GITHUB_", "OPENAI_", "PROMPTOPS_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", GITHUB_ACTIONS="true", CI="true",
               GITHUB_EVENT_NAME="pull_request", GITHUB_EVENT_PATH=str(event_path), GITHUB_REPOSITORY=OWNER_REPO,
               GITHUB_API_URL=api_url, GITHUB_SERVER_URL="https://github.com", GITHUB_RUN_ID="7001",
               GITHUB_BASE_REF="main", GITHUB_HEAD_REF="feature", GITHUB_STEP_SUMMARY=str(summary),
               GITHUB_PATH=str(temp / "path"), GITHUB_ACTION_PATH=str(ROOT), RUNNER_TEMP=str(temp),
               GITHUB_WORKSPACE=str(workspace))
    if not fork:  # a fork's run gets no secrets: the key and the model server are absent
        env.update(OPENAI_API_KEY=API_KEY, PROMPTOPS_API_BASE=stub.base_url)
    return Job(workspace, temp, env)


@pytest.fixture(scope="module")
def stub():
    rules = [Rule(system="hostile", reply=HOSTILE)]
    rules += [Rule(match=f"Greet {n}.", reply=f"Hello {n}, welcome!") for n in NAMES]
    with StubServer(rules=rules) as server:
        yield server


def comments(github: FakeGitHub) -> list[dict]:
    return github.comments(OWNER_REPO, 42)


def test_the_job_posts_one_comment_then_updates_it_in_place(tmp_path: Path, workspace: Path, stub: StubServer) -> None:
    push(workspace, "Be warm and brief.")
    with FakeGitHub(token=TOKEN) as github:
        job = make_job(tmp_path, workspace, github.api_url, stub)
        assert job.run_action({}) == 0, "\n".join(job.logs)
        [first] = comments(github)
        assert "promptops: Pass" in first["body"]
        outputs = job.outputs["check"]
        assert outputs["verdict"] == "pass" and float(outputs["pass-rate"]) == 1.0
        report_path = Path(outputs["report-path"])
        assert report_path.is_file() and report_path.parent == job.temp / "promptops-report"
        assert "promptops: Pass" in (job.temp / "step-summary.md").read_text()

        push(workspace, "hostile")  # the next push: the model now answers with hostile text
        job = make_job(tmp_path, workspace, github.api_url, stub)
        assert job.run_action({}) == 1, "\n".join(job.logs)  # a regression: the comment first, then the failure
        [second] = comments(github)
        assert second["id"] == first["id"] and "promptops: Fail" in second["body"]
        methods = [r.method for r in github.requests if "/comments" in r.path]
        assert methods.count("POST") == 1 and methods.count("PATCH") == 1
        assert job.outputs["check"]["verdict"] == "fail"
        assert_harmless(second["body"])
        for text in [*job.logs, (job.temp / "step-summary.md").read_text(),
                     *(p.read_text() for p in (job.temp / "promptops-report").iterdir())]:
            assert API_KEY not in text and TOKEN not in text
        assert all(TOKEN not in json.dumps(r.headers) for r in github.requests)


def assert_harmless(body: str) -> None:
    """Hostile model output in a comment: no ping, no HTML, no broken fence, within GitHub's limit.

    Inside a code fence GitHub renders nothing (no mention, no tag), so the checks look at
    everything else, and at the fences' count: the output must not have closed its own.
    """
    assert len(body) <= 65_536
    assert API_KEY not in body
    tokens = MarkdownIt("commonmark").enable("table").parse(body)
    rendered = [t for t in tokens if t.type not in ("fence", "code_block")]
    text = "\n".join([t.content for t in rendered] + [c.content for t in rendered for c in t.children or []])
    assert not re.search(r"(?<![\w`])@(octocat|acme/security-team)\b", text)
    assert "<img" not in text and "<script" not in text and "javascript:" not in text
    html = [t.content for t in tokens if t.type == "html_block"] + [
        c.content for t in rendered if t.children for c in t.children if c.type == "html_inline"]
    allowed = re.compile(r"\s*(<!-- promptops-report [^>]*-->|</?(details|summary|sub)>)(\s*<summary>.*</summary>)?\s*",
                         re.S)
    assert all(allowed.fullmatch(h) for h in html), html
    fences = [t for t in tokens if t.type == "fence"]
    assert all("injected heading" not in t.content or t.content.startswith("@octocat") for t in fences)
    assert "injected heading" not in [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]


def test_a_fork_gets_lint_and_cost_and_a_clear_line_instead_of_evals(tmp_path: Path, workspace: Path,
                                                                     stub: StubServer) -> None:
    push(workspace, "Be warm and brief.")
    with FakeGitHub(token=TOKEN, read_only=True) as github:
        job = make_job(tmp_path, workspace, github.api_url, stub, fork=True)
        assert job.run_action({}) == 0, "\n".join(job.logs)
        summary = (job.temp / "step-summary.md").read_text()
        assert "evals skipped: this pull request comes from a fork" in summary
        assert job.outputs["check"]["verdict"] == "warn" and job.outputs["check"]["pass-rate"] == ""
        assert "comment: skipped-forbidden" in "\n".join(job.logs)
        assert comments(github) == []


def test_inputs_reach_promptops_without_passing_through_the_shell(tmp_path: Path, workspace: Path,
                                                                  stub: StubServer) -> None:
    push(workspace, "Be warm and brief.")
    with FakeGitHub(token=TOKEN) as github:
        job = make_job(tmp_path, workspace, github.api_url, stub)
        code = job.run_action({"comment": "false", "eval": "false", "base-ref": "main; touch pwned",
                               "fail-on": "never"})
        assert code == 2 and not (workspace / "pwned").exists()  # a ref named so does not exist: exit 2
        assert "main; touch pwned" in "\n".join(job.logs)
        job = make_job(tmp_path, workspace, github.api_url, stub)
        assert job.run_action({"comment": "false", "eval": "false", "config": "promptops.yaml"}) == 0
        assert github.requests == [] and job.outputs["check"]["verdict"] in ("pass", "warn")
