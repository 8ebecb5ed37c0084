"""`promptops eval` end to end: a real git repository, base and head, the stub model through litellm."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest
from jsonschema import Draft202012Validator

from helpers.cli import run_promptops
from helpers.geo import COUNTRIES, PROMPT, SUITE, stub  # noqa: F401 (a fixture)
from helpers.repo import git, git_env
from promptops import resources
from promptops.config import load_workspace
from promptops.evals.execute import EvalOptions, select_suites
from promptops.retrieval.evalcases import RetrievedPassages
from promptops.testing import Rule, StubServer

OTHER = "id: other\nmodel: {name: openai/gpt-4o-mini}\nmessages: [{role: user, content: hi}]\n"
OTHER_SUITE = "prompt: other\ncases: [{id: one, assert: [{type: contains, value: hello}]}]\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    files = {"promptops.yaml": "eval: {concurrency: 4}\n",
             "geo.prompt.yaml": PROMPT.replace("SYSTEM", "Answer with the city."),
             "geo.eval.yaml": SUITE, "other.prompt.yaml": OTHER, "other.eval.yaml": OTHER_SUITE}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    return tmp_path


def promptops(root: Path, stub: StubServer, *args: str, expect: int) -> subprocess.CompletedProcess[str]:
    """``promptops eval`` against the stub, in-process (tests/helpers/cli.py)."""
    done = run_promptops(["eval", "--api-base", stub.base_url, *args], cwd=root, env=git_env())
    assert done.returncode == expect, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def test_a_regression_beyond_noise_fails_the_gate(repo: Path, stub: StubServer, tmp_path: Path) -> None:
    (repo / "geo.prompt.yaml").write_text(PROMPT.replace("SYSTEM", "Answer rudely."))
    junit = tmp_path / "junit.xml"
    done = promptops(repo, stub, "--base", "HEAD", "--format", "json", "--junit", str(junit), expect=1)
    report = json.loads(done.stdout)
    Draft202012Validator(resources.schema("eval-results")).validate(report)
    [suite] = report["suites"]  # other.eval.yaml is untouched by the change: not run
    assert suite["suite"] == "geo.eval.yaml"
    assert suite["base"]["pass_rate"] == 1.0 and suite["head"]["pass_rate"] == 0.0
    assert suite["counts"]["regressed"] == 8 and suite["verdict"] == "regression"
    assert suite["p_value"] == pytest.approx(2 * 0.5 ** 8)
    assert [g["passed"] for g in suite["gates"]] == [False]
    assert any("other.eval.yaml" in reason for reason in report["skipped"])
    regressed = suite["cases"][0]
    assert regressed["head"]["attempts"][0]["output"] == "No idea."
    assert "contains" in regressed["head"]["attempts"][0]["failures"][0]
    xml = ElementTree.parse(junit).getroot()
    assert xml.find("testsuite").get("failures") == "8"


def test_a_rerun_makes_no_model_call(repo: Path, stub: StubServer) -> None:
    (repo / "geo.prompt.yaml").write_text(PROMPT.replace("SYSTEM", "Answer with the capital city."))
    promptops(repo, stub, "--base", "HEAD", expect=0)
    calls = stub.calls
    done = promptops(repo, stub, "--base", "HEAD", "--format", "json", expect=0)
    assert stub.calls == calls
    suite = json.loads(done.stdout)["suites"][0]
    assert suite["head"]["cached_calls"] == suite["head"]["calls"] == 8


def test_all_and_head_only(repo: Path, stub: StubServer) -> None:
    done = promptops(repo, stub, "--no-base", "--all", "--format", "json", expect=0)
    report = json.loads(done.stdout)
    assert report["base"] is None
    assert sorted(s["suite"] for s in report["suites"]) == ["geo.eval.yaml", "other.eval.yaml"]
    assert all(s["head"]["pass_rate"] == 1.0 for s in report["suites"])


def test_repeat_and_suite_selection(repo: Path, stub: StubServer) -> None:
    done = promptops(repo, stub, "--no-base", "--suite", "other", "--repeat", "3", "--format", "json", expect=0)
    [suite] = json.loads(done.stdout)["suites"]
    assert suite["head"]["calls"] == 3 and suite["head"]["flaky"] == []


def test_missing_key_is_a_clear_usage_error(repo: Path) -> None:
    env = {k: v for k, v in git_env().items() if k not in ("OPENAI_API_KEY", "PROMPTOPS_API_BASE")}
    done = run_promptops(["eval", "--all", "--no-base"], cwd=repo, env=env)
    assert done.returncode == 2 and "OPENAI_API_KEY" in done.stderr and "Traceback" not in done.stderr


def test_progress_goes_to_stderr_as_plain_lines_in_ci(repo: Path, stub: StubServer) -> None:
    done = promptops(repo, stub, "--no-base", "--all", "--format", "json", expect=0)
    json.loads(done.stdout)  # standard output stays a clean report
    assert "eval: 9 of 9 answers (" in done.stderr


def test_shards_then_merge_then_one_report_without_model_calls(repo: Path, stub: StubServer, tmp_path: Path) -> None:
    (repo / "geo.prompt.yaml").write_text(PROMPT.replace("SYSTEM", "Answer with the capital, briefly."))
    shards = []
    for index in (1, 2):
        cache = tmp_path / f"shard{index}.db"
        done = promptops(repo, stub, "--base", "HEAD", "--shard", f"{index}/2", "--cache", str(cache),
                         "--format", "json", expect=0)
        shards.append(sum(s["head"]["cases"] for s in json.loads(done.stdout)["suites"]))
        assert cache.is_file()
    assert sum(shards) == 8 and all(shards)  # every case in exactly one shard
    merged = run_promptops(["merge", *(tmp_path / f"shard{i}.db" for i in (1, 2))], cwd=repo, env=git_env())
    assert merged.returncode == 0, merged.stderr
    calls = stub.calls
    report = json.loads(promptops(repo, stub, "--base", "HEAD", "--format", "json", expect=0).stdout)
    assert stub.calls == calls
    assert report["suites"][0]["head"]["cases"] == 8 and report["suites"][0]["head"]["cached_calls"] == 8


def test_bad_shard_is_a_usage_error(repo: Path, stub: StubServer) -> None:
    done = run_promptops(["eval", "--shard", "3/2"], cwd=repo, env=git_env())
    assert done.returncode == 2 and "I/N" in done.stderr


def test_model_judged_assertions_use_the_judge_and_report_its_cost(repo: Path, stub: StubServer) -> None:
    (repo / "judged.prompt.yaml").write_text(OTHER.replace("id: other", "id: judged"))
    (repo / "judged.eval.yaml").write_text(
        "prompt: judged\ncases: [{id: one, assert: [{type: llm_rubric, value: 'Greets the user warmly'}]}]\n")
    stub.reset(rules=[Rule(match="Grade the answer against the rubric",
                           reply='{"reason": "friendly", "score": 0.9, "pass": true}')], default_reply="hello")
    try:
        done = promptops(repo, stub, "--no-base", "--suite", "judged", "--format", "json", expect=0)
    finally:
        stub.reset(rules=[Rule(system="rudely", match="capital", reply="No idea.")]
                   + [Rule(match=country, reply=city) for country, city in COUNTRIES.items()], default_reply="hello")
    [suite] = json.loads(done.stdout)["suites"]
    assert suite["head"]["pass_rate"] == 1.0
    assert suite["head"]["judge_cost_usd"] > 0  # judge calls are priced, and reported apart


def test_the_spend_cap_holds_for_the_whole_run(repo: Path, stub: StubServer) -> None:
    (repo / "geo.prompt.yaml").write_text(
        PROMPT.replace("SYSTEM", "Name the capital.").replace("max_tokens: 20", "max_tokens: 2000"))
    stub.reset(rules=[Rule(match="capital", reply="x" * 4000)])  # 1,001 output tokens: about $0.0006 a call
    try:
        done = promptops(repo, stub, "--base", "HEAD", "--max-cost", "0.005", "--concurrency", "1",
                         "--format", "json", expect=1)  # every answer fails either way: no regression...
    finally:
        stub.reset(rules=[Rule(system="rudely", match="capital", reply="No idea.")]
                   + [Rule(match=country, reply=city) for country, city in COUNTRIES.items()], default_reply="hello")
    suite = json.loads(done.stdout)["suites"][0]
    attempts = [a for case in suite["cases"] for side in ("base", "head") if case[side] for a in case[side]["attempts"]]
    refused = [a for a in attempts if any("spend cap" in f for f in a["failures"])]
    answered = [a for a in attempts if a["output"] is not None]
    # Base and head share one budget: the sixteen calls wanted do not all fit, and what ran stays under it.
    assert refused and answered
    assert sum(a["cost_usd"] for a in answered) <= 0.005
    # ...but the results are incomplete, and the run says so instead of passing.
    [capped] = [gate for gate in suite["gates"] if gate["gate"] == "within_spend_cap"]
    assert not capped["passed"] and f"stopped {len(refused)} model call(s)" in capped["reason"]


@pytest.fixture
def example_pair(tmp_path: Path) -> tuple[Path, Path]:
    """The bundled example twice: base, and a head for each test to edit."""
    example = Path(resources.__file__).resolve().parents[1] / "examples" / "support-assistant"
    return shutil.copytree(example, tmp_path / "base"), shutil.copytree(example, tmp_path / "head")


def test_impact_selection_follows_content_not_layout(example_pair: tuple[Path, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    base, head = example_pair

    def selected(base: Path, head: Path) -> list[str]:
        monkeypatch.chdir(base)  # suites are named by their path from where promptops runs, as in one repository
        base_workspace = load_workspace(base)
        monkeypatch.chdir(head)
        chosen, _ = select_suites(base_workspace, load_workspace(head), EvalOptions(passages=RetrievedPassages()))
        return sorted(suite.prompt for suite in chosen)

    assert selected(base, head) == []
    classify = head / "prompts" / "classify.prompt.yaml"
    classify.write_text("# a comment and a blank line change no content\n\n" + classify.read_text())
    assert selected(base, head) == []
    answer = ["support.answer", "support.answer"]  # its two suites: passages as fixtures, and retrieved
    article = head / "kb" / "refunds.md"  # a document of the corpus support.answer retrieves from
    article.write_text(article.read_text().replace("5-10 business days", "3-5 business days"))
    assert selected(base, head) == answer
    kb = head / "retrieval" / "support_kb.retrieval.yaml"
    kb.write_text(kb.read_text().replace("top_n: 4", "top_n: 3"))  # what support.answer receives
    assert selected(base, head) == answer
    summarize = head / "prompts" / "summarize_ticket.prompt.yaml"
    summarize.write_text(summarize.read_text().replace("temperature: 0", "temperature: 0.2", 1))
    assert selected(base, head) == [*answer, "support.summarize_ticket"]
    (head / "prompts" / "draft_reply.prompt.yaml").unlink()  # its suite stays and must say why it cannot run
    assert selected(base, head) == [*answer, "support.draft_reply", "support.summarize_ticket"]
