"""Linting a few files of a larger project (what pre-commit does): cross-file checks still see the
whole project, with and without git, and suites that test a changed prompt are re-checked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from promptops.lint import lint

PROMPT = """\
id: {id}
model: {{name: openai/gpt-4o-mini}}
inputs:
  type: object
  required: [{required}]
  properties:
{properties}
messages:
  - role: user
    content: "{content}"
"""


def prompt(prompt_id: str, inputs: list[str]) -> str:
    return PROMPT.format(
        id=prompt_id,
        required=", ".join(inputs),
        properties="\n".join(f"    {name}: {{type: string}}" for name in inputs),
        content=" ".join(f"{{{{ {name} }}}}" for name in inputs),
    )


@pytest.fixture(params=["git", "no-git"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    (tmp_path / "promptops.yaml").write_text("defaults: {model: openai/gpt-4o-mini}\n")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "evals").mkdir()
    for i in range(30):  # neighbours whose ids contain the tested one as a prefix
        (tmp_path / "prompts" / f"n{i}.prompt.yaml").write_text(prompt(f"team.answer{i}", ["q"]))
    (tmp_path / "prompts" / "answer.prompt.yaml").write_text(prompt("team.answer", ["q"]))
    (tmp_path / "evals" / "answer.eval.yaml").write_text(
        "prompt: team.answer\ncases:\n  - id: one\n    vars: {q: hello}\n"
    )
    if request.param == "git":
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    return tmp_path


def codes(project: Path, *paths: str) -> list[tuple[str, int, str]]:
    return [(f.path, f.line, f.code) for f in lint([Path(p) for p in paths], cwd=project).findings]


def test_a_clean_change_is_clean(project: Path) -> None:
    assert codes(project, "prompts/answer.prompt.yaml") == []


def test_duplicate_id_in_an_unchanged_file_is_found(project: Path) -> None:
    (project / "prompts" / "copy.prompt.yaml").write_text(prompt("team.answer", ["q"]))
    assert codes(project, "prompts/copy.prompt.yaml") == [("prompts/copy.prompt.yaml", 1, "PO120")]


def test_suites_of_a_changed_prompt_are_rechecked(project: Path) -> None:
    (project / "prompts" / "answer.prompt.yaml").write_text(prompt("team.answer", ["q", "locale"]))
    assert codes(project, "prompts/answer.prompt.yaml") == [("evals/answer.eval.yaml", 4, "PO204")]


def test_a_suite_alone_resolves_its_prompt(project: Path) -> None:
    assert codes(project, "evals/answer.eval.yaml") == []
    (project / "evals" / "answer.eval.yaml").write_text("prompt: team.answr\ncases: [{id: one, vars: {q: x}}]\n")
    assert codes(project, "evals/answer.eval.yaml") == [("evals/answer.eval.yaml", 1, "PO501")]
