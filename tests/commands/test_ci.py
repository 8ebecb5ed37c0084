"""`promptops ci` end to end outside Actions: a real git repository with a base and a head commit,
the stub model through litellm, every report file checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers.cli import run_promptops
from helpers.geo import PROMPT, SUITE, stub  # noqa: F401 (a fixture)
from helpers.repo import git, git_env
from promptops.testing import Fault, Rule, StubServer

CONFIG = "eval: {concurrency: 4}\nusage: {geo.capital: {calls_per_day: 1000}}\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    files = {"promptops.yaml": CONFIG, "geo.prompt.yaml": PROMPT.replace("SYSTEM", "Answer with the city."),
             "geo.eval.yaml": SUITE}
    for name, text in files.items():
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    git(root, "switch", "-qc", "change")
    return root


def commit(root: Path, name: str, text: str) -> None:
    (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-qm", f"edit {name}")


def ci(root: Path, *args: str, expect: int, stub: StubServer | None = None,  # noqa: F811 (not the fixture)
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = ["ci", *args]
    if stub is not None:
        command += ["--api-base", stub.base_url]
    environment = {k: v for k, v in git_env().items() if not k.startswith("GITHUB_")}
    environment.update(env or {})
    done = run_promptops(command, cwd=root, env=environment)
    assert done.returncode == expect, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def report(root: Path) -> dict:
    return json.loads((root / ".promptops/report/report.json").read_text())


def test_a_regression_fails_the_check_and_every_report_says_why(repo: Path, stub: StubServer) -> None:  # noqa: F811
    commit(repo, "geo.prompt.yaml", PROMPT.replace("SYSTEM", "Answer rudely."))
    done = ci(repo, expect=1, stub=stub)
    data = report(repo)
    assert data["verdict"]["level"] == "fail" and data["verdict"]["exit_code"] == 1
    assert any("8 of 8 cases confirmed regressed" in reason for reason in data["verdict"]["failures"])
    [suite] = data["evals"]["suites"]
    assert suite["counts"]["regressed"] == 8 and all(case["confirmed"] for case in suite["cases"])
    markdown = (repo / ".promptops/report/report.md").read_text()
    assert markdown.startswith("## ❌ promptops: Fail:")
    assert "| geo.capital | 100% → 0% | 8 confirmed |" in markdown
    assert "Regressed cases in geo.eval.yaml (8)" in markdown and "No idea." in markdown
    html = (repo / ".promptops/report/report.html").read_text()
    assert html.count("<svg") >= 3 and "No idea." in html
    assert "Fail:" in done.stdout and "report.html" in done.stdout


def test_a_good_change_passes_and_a_rerun_makes_no_model_call(repo: Path, stub: StubServer) -> None:  # noqa: F811
    commit(repo, "geo.prompt.yaml", PROMPT.replace("SYSTEM", "Answer with the capital city only."))
    ci(repo, expect=0, stub=stub)
    calls = stub.calls
    ci(repo, expect=0, stub=stub)
    assert stub.calls == calls
    data = report(repo)
    assert data["verdict"]["level"] == "pass"
    assert data["evals"]["suites"][0]["head"]["cached_calls"] == 8
    assert data["lint"]["files"] == [str(repo / "geo.prompt.yaml")]


def test_without_an_api_key_evals_are_skipped_and_the_rest_still_runs(repo: Path) -> None:
    commit(repo, "geo.prompt.yaml", PROMPT.replace("SYSTEM", "Answer with the capital city only."))
    env = {"OPENAI_API_KEY": "", "PROMPTOPS_API_BASE": ""}
    done = ci(repo, expect=0, env=env)
    data = report(repo)
    assert data["verdict"]["level"] == "warn" and not data["evals"]["ran"]
    assert "OPENAI_API_KEY" in data["evals"]["note"]
    assert data["cost"]["prompts"][0]["status"] == "changed"
    assert "evals skipped" in done.stdout


def test_lint_errors_in_the_change_fail_unless_fail_on_says_otherwise(repo: Path) -> None:
    commit(repo, "geo.prompt.yaml", PROMPT.replace("SYSTEM", "{{ undeclared }}"))
    ci(repo, "--no-eval", expect=1)
    data = report(repo)
    assert any(f["code"] == "PO202" for f in data["lint"]["findings"]), data["lint"]
    assert data["verdict"]["failures"][0].startswith("lint found 9 errors in 2 files")  # the prompt and its suite
    ci(repo, "--no-eval", "--fail-on", "regression", expect=0)
    ci(repo, "--no-eval", "--fail-on", "never", expect=0)


def test_a_model_service_down_after_retries_exits_3(repo: Path) -> None:
    commit(repo, "geo.prompt.yaml", PROMPT.replace("SYSTEM", "Answer with the capital city only."))
    (repo / "promptops.yaml").write_text(CONFIG.replace("concurrency: 4", "concurrency: 4, retries: 1"))
    # Retry-After: 0, so that the retries come at once (honouring the header is test_runner's).
    with StubServer(rules=[Rule(reply=Fault("503", retry_after=0))]) as down:
        ci(repo, expect=3, stub=down)
    data = report(repo)
    assert data["verdict"]["exit_code"] == 3 and "got no answer after retries" in data["verdict"]["failures"][0]


def test_an_unknown_base_is_a_usage_error(repo: Path) -> None:
    done = ci(repo, "--base", "no-such-ref", "--no-eval", expect=2)
    assert "no-such-ref" in done.stderr


def test_a_report_folder_that_cannot_be_written_is_a_usage_error(repo: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = ci(repo, "--no-eval", "--report-dir", str(blocker / "report"), expect=2)
    assert "cannot write the report" in done.stderr


def test_sarif_is_written_for_code_scanning(repo: Path, tmp_path: Path) -> None:
    commit(repo, "geo.prompt.yaml", PROMPT.replace("SYSTEM", "{{ undeclared }}"))
    sarif = tmp_path / "out" / "lint.sarif"
    ci(repo, "--no-eval", "--sarif", str(sarif), expect=1)
    log = json.loads(sarif.read_text())
    assert log["version"] == "2.1.0" and "PO202" in {result["ruleId"] for result in log["runs"][0]["results"]}


def test_demo_runs_the_whole_check_offline(tmp_path: Path) -> None:
    environment = {k: v for k, v in git_env().items() if k not in ("OPENAI_API_KEY", "PROMPTOPS_API_BASE")}
    done = run_promptops(["demo", tmp_path / "demo"], cwd=tmp_path, env=environment)  # its check: a child process
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "demo/report/report.json").read_text())
    suites = {suite["suite"]: suite for suite in data["evals"]["suites"]}
    # the prompt edit touches both suites of support.answer: the fixture one and the retrieval-backed one
    assert sorted(suites) == ["evals/answer.eval.yaml", "evals/answer_retrieved.eval.yaml"]
    assert {suite["prompt"] for suite in suites.values()} == {"support.answer"}
    fixtures = suites["evals/answer.eval.yaml"]
    assert fixtures["counts"]["regressed"] >= 1 and fixtures.get("retrieval") is None  # its cases bring their passages
    assert data["cost"]["prompts"] and (tmp_path / "demo/report/report.html").is_file()

    # the branch's retrieval cut (reranker top_n 4 -> 1) loses an article, and with it an answer
    retrieval = suites["evals/answer_retrieved.eval.yaml"]["retrieval"]
    assert (retrieval["base"]["k"], retrieval["head"]["k"]) == (4, 1)
    assert retrieval["base"]["recall"] == 1.0 and retrieval["head"]["recall"] < 0.9
    assert retrieval["verdict"] == "regression" and retrieval["lost"] >= 1
    changes = {change["id"]: change for change in retrieval["changes"]}
    assert changes["annual-refund-late"]["lost"] == ["kb/annual-plans.md"]
    assert changes["annual-refund-late"]["answer"] == "regressed"
    [line] = data["retrieval"]
    assert line["suite"] == "evals/answer_retrieved.eval.yaml"
    assert "recall@4 100% → recall@1 83%" in line["line"] and "answers pass 100% → 90%" in line["line"], line
    comment = (tmp_path / "demo/report/report.md").read_text()
    markdown_line = next(text for text in comment.splitlines() if text.startswith("**Retrieval:**"))
    assert "recall@\u20604 100% → recall@\u20601 83%" in markdown_line, markdown_line
    case_line = next(text for text in comment.splitlines() if text.startswith("- annual-refund-late"))
    assert "lost kb/annual-plans.md" in case_line and "answer regressed" in case_line, case_line
    assert "Recall@k per suite" in (tmp_path / "demo/report/report.html").read_text()  # its chart
    gates = {gate["gate"]: gate for gate in suites["evals/answer_retrieved.eval.yaml"]["gates"]}
    assert not gates["max_recall_drop"]["passed"] and gates["min_recall_at_k"]["passed"]
    # the check left its index and cache in the demo repository, where git ignores them
    repository = tmp_path / "demo/repo"
    assert (repository / ".promptops/index").is_dir() and git(repository, "status", "--porcelain") == ""
    again = run_promptops(["demo", tmp_path / "demo"], cwd=tmp_path, env=environment)
    assert again.returncode == 2 and "not empty" in again.stderr
