"""What lint says it checked: the files it was given, the related ones apart, and a folder with nothing
to lint (no promptops.yaml, no spec file) said as such with exit 2 -- on the command line and under the
real pre-commit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.cli import cli_env, run_promptops
from helpers.lint import assert_no_traceback
from helpers.repo import git, git_env

PROMPT = """\
id: greet
model: {name: openai/gpt-4o-mini, params: {max_tokens: 50}}
inputs: {type: object, required: [name], properties: {name: {type: string}}}
messages: [{role: user, content: "Say hello to {{ name }}."}]
"""
SUITE = "prompt: greet\ncases: [{id: one, vars: {name: Ada}}]\n"
BROKEN = PROMPT.replace("{{ name }}", "{{ name }} from {{ company }}")  # PO202


def _project(root: Path, config: bool = True) -> Path:
    (root / "prompts").mkdir(parents=True)
    (root / "evals").mkdir()
    if config:
        (root / "promptops.yaml").write_text("defaults: {model: openai/gpt-4o-mini}\n")
    (root / "prompts" / "greet.prompt.yaml").write_text(PROMPT)
    (root / "prompts" / "other.prompt.yaml").write_text(PROMPT.replace("id: greet", "id: other"))
    (root / "evals" / "greet.eval.yaml").write_text(SUITE)
    return root


def _summary(result) -> str:
    assert_no_traceback(result)
    return result.stdout.splitlines()[-1]


def test_one_file_named_is_one_file_checked(tmp_path: Path) -> None:
    root = _project(tmp_path)
    result = run_promptops(["lint", "prompts/greet.prompt.yaml"], cwd=root, env=cli_env())
    assert result.returncode == 0, result.stdout + result.stderr
    # promptops.yaml and the prompt's suite are checked too, and said apart
    assert _summary(result) == "All clean: 1 file checked (and 2 related)."
    document = run_promptops(["lint", "--format", "json", "prompts/greet.prompt.yaml"], cwd=root, env=cli_env()).json()
    assert (document["files_checked"], document["related_files_checked"]) == (1, 2)


def test_counts_are_plural_and_a_prompt_without_suite_has_only_the_config_related(tmp_path: Path) -> None:
    root = _project(tmp_path)
    assert _summary(run_promptops(["lint", "prompts/other.prompt.yaml"], cwd=root, env=cli_env())) == \
        "All clean: 1 file checked (and 1 related)."
    both = run_promptops(["lint", "prompts/greet.prompt.yaml", "prompts/other.prompt.yaml"], cwd=root, env=cli_env())
    assert _summary(both) == "All clean: 2 files checked (and 2 related)."
    assert _summary(run_promptops(["lint", "promptops.yaml"], cwd=root, env=cli_env())) == "All clean: 1 file checked."
    assert _summary(run_promptops(["lint"], cwd=root, env=cli_env())) == "All clean: 4 files checked."


def test_findings_are_counted_in_the_files_named(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "prompts" / "greet.prompt.yaml").write_text(BROKEN)
    result = run_promptops(["lint", "prompts/greet.prompt.yaml"], cwd=root, env=cli_env())
    assert result.returncode == 1
    assert "prompts/greet.prompt.yaml:4:34: PO202" in result.stdout
    assert "evals/greet.eval.yaml:2:9: PO205" in result.stdout  # the related suite no longer renders
    assert _summary(result) == "2 errors, 0 warnings in 1 file (and 2 related)."


def test_a_folder_without_promptops_yaml_or_specs_says_so_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a prompt\n")
    result = run_promptops(["lint"], cwd=tmp_path, env=cli_env())
    assert_no_traceback(result)
    assert result.returncode == 2 and result.stdout == ""
    assert f"nothing to lint: {tmp_path.resolve()} holds no promptops.yaml" in result.stderr
    assert "promptops init" in result.stderr
    assert "0 files" not in result.stdout + result.stderr


def test_an_empty_folder_inside_a_project_names_the_project(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "drafts").mkdir()
    result = run_promptops(["lint", "drafts"], cwd=root, env=cli_env())
    assert result.returncode == 2 and result.stdout == ""
    assert "nothing to lint in drafts: no promptops.yaml, *.prompt.yaml, *.retrieval.yaml or *.eval.yaml" \
        in result.stderr
    inside = run_promptops(["lint"], cwd=root / "drafts", env=cli_env())
    assert inside.returncode == 2
    assert f"the project's promptops.yaml is {root.resolve() / 'promptops.yaml'}" in inside.stderr


def test_a_file_that_is_not_a_promptops_file_is_skipped_aloud(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "notes.yaml").write_text("a: 1\n")
    alone = run_promptops(["lint", "notes.yaml"], cwd=root, env=cli_env())
    assert alone.returncode == 2
    assert "skipped notes.yaml: not a promptops file" in alone.stderr
    assert "nothing to lint in notes.yaml" in alone.stderr
    together = run_promptops(["lint", "notes.yaml", "prompts/other.prompt.yaml"], cwd=root, env=cli_env())
    assert together.returncode == 0 and "skipped notes.yaml" in together.stderr
    assert _summary(together) == "All clean: 1 file checked (and 1 related)."


def test_files_without_promptops_yaml_are_linted_on_the_command_line(tmp_path: Path) -> None:
    root = _project(tmp_path, config=False)
    result = run_promptops(["lint", "prompts/greet.prompt.yaml"], cwd=root, env=cli_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert _summary(result) == "All clean: 1 file checked (and 1 related)."


# -- under pre-commit ---------------------------------------------------------------------------

LOCAL_HOOK = f"""\
repos:
  - repo: local
    hooks:
      - id: promptops-lint
        name: promptops lint
        entry: {sys.executable} -m promptops lint
        language: system
        files: (^|/)(promptops\\.yaml|[^/]+\\.(prompt|retrieval|eval)\\.yaml)$
        require_serial: true
"""


def _pre_commit(repo: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`pre-commit run` on the staged files: the hook runs as a commit would run it."""
    env = git_env(PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"))
    for name in ("PRE_COMMIT", "GITHUB_ACTIONS"):  # as in cli_env: a hook's or a workflow's own settings
        env.pop(name, None)
    command = [sys.executable, "-m", "pre_commit", "run", "promptops-lint"]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.mark.skipif(shutil.which("git") is None, reason="pre-commit needs git")
@pytest.mark.parametrize("config", [True, False], ids=["with-promptops-yaml", "without"])
def test_the_hook_refuses_files_no_promptops_yaml_claims(tmp_path: Path, config: bool) -> None:
    pytest.importorskip("pre_commit")
    repo = _project(tmp_path / "repo", config=config)
    (repo / ".pre-commit-config.yaml").write_text(LOCAL_HOOK)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    done = _pre_commit(repo, tmp_path)
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    if config:
        assert done.returncode == 0, output
        assert "All clean" not in output  # pre-commit shows a passing hook's output only with --verbose
        return
    assert done.returncode != 0, output
    assert "exit code: 2" in output
    assert "no promptops.yaml in" in output and "belong to no promptops project" in output
    assert "promptops init" in output
