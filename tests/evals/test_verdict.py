"""The PR verdict end to end, right in both directions: real git repositories with a base and a PR
branch, the stub model through the real litellm path, `promptops eval` and `promptops ci`.

Issue 11's cases: a 6-case suite whose head upper-cases its answers must fail and name the 4 cases
it breaks; one deterministic regression in 20 fails a 2-point gate while the same case flipping by
chance is flaky and passes; identical prompts make one call per distinct request and no latency
change; a fork's PR with no key still meets max_cost_increase_pct on the estimate; a gate that fails
on the base says so, and gates.preexisting decides."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers.geo import PROMPT  # geo.capital, its system message SYSTEM
from helpers.repo import git
from promptops.ci import CheckOptions, run_check
from promptops.cli import cli
from promptops.evals.execute import EvalOptions
from promptops.testing import StubServer
from promptops.testing.rules import last_text, system_text

CITIES = {"France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo", "Peru": "Lima", "Egypt": "Cairo"}


def suite(cities: dict[str, str], sensitive: set[str], gates: str = "{max_pass_rate_drop: 0.02}") -> str:
    """Cases that check the city; those in ``sensitive`` with a case-sensitive `contains`."""
    rows = "".join(
        f"  - {{id: {country.lower()}, vars: {{country: {country}}}, expected: {city}, "
        f"assert: [{{type: {'contains' if country in sensitive else 'icontains'}, value: '{{{{ expected }}}}'}}]}}\n"
        for country, city in cities.items())
    return f"prompt: geo.capital\ngates: {gates}\ncases:\n{rows}"


def answer(request: dict) -> str:
    """The capital; in capitals when the system message asks for it; wrong for a 'broken' country."""
    question, system = last_text(request.get("messages") or [], "user"), system_text(request.get("messages") or [])
    country = question.rsplit(" ", 1)[-1].rstrip("?")
    city = CITIES.get(country) or f"City of {country}"
    if f"break {country}" in system:
        return "No idea."
    return city.upper() if "capital letters" in system else city


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    with StubServer(responder=answer) as server:
        yield server


def make_repo(root: Path, base_system: str, head_system: str, eval_yaml: str,
              config: str = "eval: {concurrency: 4}\n") -> Path:
    """main with the base prompt; branch pr with the head prompt, committed and checked out."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "promptops.yaml").write_text(config)
    (root / "geo.prompt.yaml").write_text(PROMPT.replace("SYSTEM", base_system))
    (root / "geo.eval.yaml").write_text(eval_yaml)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    git(root, "switch", "-qc", "pr")
    (root / "geo.prompt.yaml").write_text(PROMPT.replace("SYSTEM", head_system))
    git(root, "commit", "-qam", "the change", "--allow-empty")
    return root


def eval_cli(root: Path, stub: StubServer, *args: str) -> tuple[int, str]:
    cwd = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(cli, ["eval", "--api-base", stub.base_url, *args], catch_exceptions=False)
    finally:
        os.chdir(cwd)
    return result.exit_code, result.output


def check(root: Path, stub: StubServer | None, **options: object):
    cwd = os.getcwd()
    os.chdir(root)
    try:
        eval_options = EvalOptions(api_base=stub.base_url if stub else None)
        return run_check(root, CheckOptions(base="main", eval_options=eval_options, **options))  # type: ignore[arg-type]
    finally:
        os.chdir(cwd)


def test_four_deterministic_regressions_of_six_fail_eval_and_ci_and_are_named(tmp_path: Path,
                                                                             stub: StubServer) -> None:
    sensitive = {"France", "Italy", "Spain", "Japan"}
    repo = make_repo(tmp_path / "repo", "Answer with the city.", "Answer with the city, in capital letters.",
                     suite(CITIES, sensitive))
    code, output = eval_cli(repo, stub, "--base", "main", "--head", "pr")
    assert code == 1, output
    assert "FAIL geo.eval.yaml" in output and "4 of 6 cases confirmed regressed" in output
    named = {line.split()[1] for line in output.splitlines() if line.strip().startswith("regressed ")}
    assert named == {c.lower() for c in sensitive}
    assert "base 3 of 3 pass, head 0 of 3 pass" in output  # each confirmed by two more samples a side

    report = check(repo, stub)
    assert report.verdict.exit_code == 1 and report.verdict.level == "fail"
    assert any(reason.startswith("geo.eval.yaml: pass rate 100.0% -> 33.3%: 4 of 6 cases confirmed regressed")
               for reason in report.verdict.failures)
    [comparison] = report.evals.comparisons
    assert {c.case_id for c in comparison.cases if c.status == "regressed" and c.confirmed} == \
        {c.lower() for c in sensitive}


def test_one_deterministic_regression_in_twenty_fails_a_two_point_gate(tmp_path: Path, stub: StubServer) -> None:
    cities = {f"Land{n}": f"City of Land{n}" for n in range(20)}
    repo = make_repo(tmp_path / "repo", "Answer with the city.", "Answer with the city. break Land7",
                     suite(cities, set()))
    report = check(repo, stub)
    [comparison] = report.evals.comparisons
    assert [c.case_id for c in comparison.cases if c.status == "regressed"] == ["land7"]
    assert report.verdict.exit_code == 1
    assert any("1 of 20 cases confirmed regressed" in reason for reason in report.verdict.failures)


def test_the_same_case_flipping_by_chance_is_flaky_and_passes(tmp_path: Path) -> None:
    cities = {f"Land{n}": f"City of Land{n}" for n in range(20)}
    # Land7 at head: wrong, then right, then wrong: a flip its confirmation does not repeat.
    head_answers = iter(["No idea.", "City of Land7", "No idea."])

    def chance(request: dict) -> str:
        messages = request.get("messages") or []
        if "Land7?" in last_text(messages, "user") and "only" in system_text(messages):
            return next(head_answers)
        return answer(request)

    repo = make_repo(tmp_path / "repo", "Answer with the city.", "Answer with the city only.", suite(cities, set()))
    with StubServer(responder=chance) as stub:
        report = check(repo, stub)
    [comparison] = report.evals.comparisons
    flaky = [c for c in comparison.cases if c.status == "flaky"]
    assert [c.case_id for c in flaky] == ["land7"] and not comparison.with_status("regressed")
    assert report.verdict.exit_code == 0 and comparison.passed
    markdown = (check_markdown(report))
    assert "Flaky cases (1)" in markdown and "land7 (base 3 of 3 pass, head 1 of 3 pass)" in markdown


def check_markdown(report) -> str:
    from promptops.report import check as renderers

    return renderers.render_markdown(report, limit=renderers.SUMMARY_LIMIT)


def test_identical_prompts_make_one_call_per_distinct_request_and_no_latency_change(tmp_path: Path) -> None:
    # Only the suite changes (a new assertion), so it runs, but every request is the same at base and head.
    repo = make_repo(tmp_path / "repo", "Answer with the city.", "Answer with the city.", suite(CITIES, set()))
    (repo / "geo.eval.yaml").write_text(suite(CITIES, set(), gates="{max_pass_rate_drop: 0.02, pass_rate: 0.5}"))
    git(repo, "commit", "-qam", "a stricter suite")
    with StubServer(responder=answer, latency_ms=60, jitter_ms=80, seed=3) as stub:
        report = check(repo, stub)
        calls = stub.calls
    [comparison] = report.evals.comparisons
    assert calls == len(CITIES)  # 6 distinct requests, 12 answers
    assert comparison.head.shared_calls + comparison.base.shared_calls == len(CITIES)
    assert comparison.latency is not None and not comparison.latency.changed
    assert comparison.latency.shift_ms == 0.0 and comparison.paired.verdict == "no change"
    assert not any("latency" in warning for warning in report.verdict.warnings)
    assert "6 call(s) saved by sharing requests identical at base and head" in check_markdown(report)


GPT4O_PROMPT = PROMPT.replace("openai/gpt-4o-mini", "openai/gpt-4o").replace("max_tokens: 20", "max_tokens: 400")


def test_without_a_key_the_estimate_meets_max_cost_increase_pct(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork's PR gets no secrets: no eval runs, and a 16x dearer prompt must still fail the cost gate."""
    repo = make_repo(tmp_path / "repo", "Answer with the city.", "Answer with the city.", suite(CITIES, set()),
                     config="gates: {max_cost_increase_pct: 25}\nusage: {geo.capital: {calls_per_day: 1000}}\n")
    (repo / "geo.prompt.yaml").write_text(GPT4O_PROMPT.replace("SYSTEM", "Answer with the city."))
    git(repo, "commit", "-qam", "a bigger model")
    monkeypatch.setenv("OPENAI_API_KEY", "")
    report = check(repo, None)
    assert not report.evals.ran
    [(prompt, gate)] = report.cost_gates
    assert prompt == "geo.capital" and not gate.passed and gate.reason.startswith("estimated cost per call")
    assert report.verdict.exit_code == 1
    assert any("no eval measured it" in reason for reason in report.verdict.failures)
    no_eval = check(repo, None, evals=False)
    assert no_eval.verdict.exit_code == 1


def test_a_gate_failing_on_the_base_too_says_so_and_preexisting_decides(tmp_path: Path, stub: StubServer) -> None:
    sensitive = {"France", "Italy"}
    eval_yaml = suite(CITIES, sensitive, gates="{pass_rate: 0.9}")
    # The base already fails Peru and Egypt: 4 of 6 pass on both sides, under the 90% gate.
    repo = make_repo(tmp_path / "repo", "Answer with the city. break Peru break Egypt",
                     "Answer with the city, please. break Peru break Egypt", eval_yaml)
    report = check(repo, stub)
    [failure] = report.verdict.failures
    assert "; also fails on main (" in failure and failure.endswith("(66.7%)") and report.verdict.exit_code == 1
    (repo / "promptops.yaml").write_text("eval: {concurrency: 4}\ngates: {preexisting: warn}\n")
    git(repo, "commit", "-qam", "tolerate what main already fails")
    relaxed = check(repo, stub)
    assert relaxed.verdict.exit_code == 0 and relaxed.verdict.level == "warn"
    assert any("(gates.preexisting: warn)" in warning for warning in relaxed.verdict.warnings)


def test_every_report_labels_its_costs_and_carries_latency_intervals(tmp_path: Path, stub: StubServer) -> None:
    repo = make_repo(tmp_path / "repo", "Answer with the city.", "Answer with the city, in capital letters.",
                     suite(CITIES, {"France"}),
                     config="eval: {concurrency: 4}\nusage: {geo.capital: {calls_per_day: 10}}\n")
    report = check(repo, stub)
    markdown = check_markdown(report)
    assert "**Cost (estimated from the files):**" in markdown
    assert "| geo.capital | 100% → 83% | 1 confirmed | " in markdown
    assert " est. $" in markdown and " · measured $" in markdown
    assert "Latency</summary>" in markdown and "over" in markdown and "timed call(s)" in markdown
    from promptops.report import check as renderers

    data = renderers.to_json(report)
    [row] = data["prompts"]
    assert set(row["cost_per_call_usd"]) == {"estimated", "measured", "gap"} and data["cost"]["kind"] == "estimated"
    suite_json = data["evals"]["suites"][0]
    assert suite_json["paired"]["confirm"] == 2 and suite_json["counts"]["regressed"] == 1
    assert len(suite_json["head"]["latency_p95_interval_ms"]) == 2 and suite_json["latency"] is not None
    html = renderers.render_html(report)
    assert "latency (ms), timed in this run" in html and ">calls</text>" in html
    assert json.loads(renderers.render_json(report))["schema_version"] == 2
