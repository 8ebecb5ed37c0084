"""Each lint rule fails on its broken case and passes on the same input fixed, side by side (sqlfluff-style).

tests/fixtures/good/NAME is tests/fixtures/bad/NAME with the problem fixed: a file or a project folder whose
first YAML file opens with ``# fixes: PO101`` (the codes it answers). Through the CLI in this process, with
``lint --strict --format json``: the bad one raises the code, the good one lints clean (exit 0, no finding at
all, so that a fix does not hide the problem behind another).

Rules that no fixture file can show take another form here: PO100 (an unreadable file) is a file written in
Latin-1, fixed by writing it in UTF-8 (the other unreadable inputs are in test_lint_bad_inputs.py); the
budget rules PO410 and PO411 (scope "cost") come from ``promptops cost`` on a git repository, fixed by a budget
the prompt fits.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.cli import run_promptops
from helpers.lint import Case, cli_env, discover_cases, discover_fixed
from helpers.repo import git, git_env
from promptops.lint.registry import all_rules

FAILING = {case.name: case for case in discover_cases()}
PASSING = discover_fixed()  # code -> the passing fixture
RULES = sorted(all_rules())
OTHER_FORMS = {"PO100", "PO410", "PO411"}  # tested below, not by a fixture file


def lint(case: Case, parent: Path) -> tuple[int, list[dict], str]:
    folder, paths = case.copy_to(parent)
    done = run_promptops(["lint", "--strict", "--format", "json", *paths], cwd=folder, env=cli_env())
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.json()["findings"] if done.stdout else [], done.stdout + done.stderr


@pytest.mark.parametrize("code", sorted(PASSING))
def test_the_bad_case_raises_the_code_and_the_fixed_one_lints_clean(code: str, tmp_path: Path) -> None:
    good = PASSING[code]
    bad = FAILING.get(good.name)
    assert bad is not None, f"tests/fixtures/good/{good.source.name} has no failing twin in tests/fixtures/bad/"
    assert code in {e.code for e in bad.expected}, f"bad/{bad.source.name} does not expect {code}"
    _, found, output = lint(bad, tmp_path / "bad")
    assert code in {f["code"] for f in found}, output
    exit_code, found, output = lint(good, tmp_path / "good")
    assert (exit_code, found) == (0, []), output


def test_every_rule_has_a_failing_and_a_passing_case() -> None:
    failing = {e.code for case in FAILING.values() for e in case.expected}
    assert sorted(set(RULES) - failing - OTHER_FORMS) == []
    assert sorted(set(RULES) - set(PASSING) - OTHER_FORMS) == []
    assert sorted(set(PASSING) - set(RULES)) == []  # a passing fixture for a rule that no longer exists
    assert set(RULES) >= OTHER_FORMS


@pytest.mark.parametrize("encoding, codes", [("latin-1", ["PO100"]), ("utf-8", [])])
def test_po100_a_file_in_latin_1_is_unreadable_and_in_utf_8_lints_clean(encoding: str, codes: list[str],
                                                                          tmp_path: Path) -> None:
    text = "id: cafe\nmodel: {name: openai/gpt-4o-mini}\nmessages: [{role: user, content: café}]\n"
    (tmp_path / "cafe.prompt.yaml").write_bytes(text.encode(encoding))
    done = run_promptops(["lint", "--strict", "--format", "json", "cafe.prompt.yaml"], cwd=tmp_path, env=cli_env())
    assert [f["code"] for f in done.json()["findings"]] == codes, done.stdout + done.stderr
    assert done.returncode == (1 if codes else 0)


PROMPT = """\
id: support.answer
model: {name: openai/gpt-4o-mini, params: {max_tokens: 100}}
budget: BUDGET
messages:
  - {role: system, content: "Answer in one sentence."}
  - {role: user, content: "How long is the refund window?"}
"""


@pytest.mark.parametrize("budget, codes", [
    ("{max_input_tokens: 5, max_cost_per_call_usd: 0.000001}", ["PO410", "PO411"]),
    ("{max_input_tokens: 1000, max_cost_per_call_usd: 0.01}", []),
])
def test_po410_po411_a_prompt_over_its_budget_fails_the_cost_check_and_within_it_passes(
        budget: str, codes: list[str], tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "promptops.yaml").write_text("defaults: {model: openai/gpt-4o-mini}\n")
    (tmp_path / "answer.prompt.yaml").write_text(PROMPT.replace("BUDGET", "{max_input_tokens: 100000}"))
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    (tmp_path / "answer.prompt.yaml").write_text(PROMPT.replace("BUDGET", budget))
    done = run_promptops(["cost", "--base", "HEAD", "--format", "json"], cwd=tmp_path, env=git_env())
    assert [f["code"] for f in done.json()["findings"]] == codes, done.stdout + done.stderr
    assert done.returncode == (1 if codes else 0)
