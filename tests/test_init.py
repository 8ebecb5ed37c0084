"""`promptops init`: the scaffold lints clean and never clobbers a user's files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from promptops.scaffold import ScaffoldError, scaffold, template_files, template_root

REPO = Path(__file__).resolve().parents[1]
EXPECTED_FILES = {
    "promptops.yaml",
    "prompts/example.prompt.yaml",
    "evals/example.eval.yaml",
    ".pre-commit-config.yaml",
    ".github/workflows/promptops.yml",
}


def promptops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command line, in a fresh process, as a user would run it."""
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}  # keep the text format
    return subprocess.run([sys.executable, "-m", "promptops", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def template(relative: str) -> bytes:
    return (template_root() / relative).read_bytes()


def test_templates_hold_exactly_the_scaffold() -> None:
    assert {str(p) for p in template_files()} == EXPECTED_FILES


def test_init_scaffolds_a_project_that_lints_clean(tmp_path: Path) -> None:
    done = promptops("init", "proj", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    project = tmp_path / "proj"
    for relative in EXPECTED_FILES:
        assert (project / relative).read_bytes() == template(relative)
        assert f"created  {relative}" in done.stdout

    lint = promptops("lint", "--strict", cwd=project)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "All clean" in lint.stdout

    report = json.loads(promptops("lint", "--format", "json", cwd=project).stdout)
    assert report["findings"] == []
    assert report["files_checked"] == 3  # promptops.yaml, the prompt, the suite


def test_init_defaults_to_the_current_folder(tmp_path: Path) -> None:
    done = promptops("init", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert all((tmp_path / relative).is_file() for relative in EXPECTED_FILES)
    assert "cd " not in done.stdout  # no need to change folder first


def test_init_never_overwrites_existing_files(tmp_path: Path) -> None:
    mine = b"# my own hooks\nrepos: []\n"
    (tmp_path / ".pre-commit-config.yaml").write_bytes(mine)
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "example.prompt.yaml").write_bytes(b"id: mine\n")

    done = promptops("init", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".pre-commit-config.yaml").read_bytes() == mine
    assert (tmp_path / "prompts" / "example.prompt.yaml").read_bytes() == b"id: mine\n"
    assert "skipped  .pre-commit-config.yaml (already exists; --force overwrites it)" in done.stdout
    assert "skipped  prompts/example.prompt.yaml" in done.stdout
    assert "created  promptops.yaml" in done.stdout
    assert (tmp_path / "promptops.yaml").read_bytes() == template("promptops.yaml")


def test_force_overwrites_existing_files(tmp_path: Path) -> None:
    (tmp_path / ".pre-commit-config.yaml").write_bytes(b"repos: []\n")

    done = promptops("init", "--force", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "overwrote  .pre-commit-config.yaml" in done.stdout
    assert (tmp_path / ".pre-commit-config.yaml").read_bytes() == template(".pre-commit-config.yaml")


def test_rerun_reports_identical_files_as_unchanged(tmp_path: Path) -> None:
    first = scaffold(tmp_path)
    second = scaffold(tmp_path)
    assert sorted(map(str, first.created)) == sorted(EXPECTED_FILES)
    assert second.created == second.skipped == second.overwritten == []
    assert sorted(map(str, second.unchanged)) == sorted(EXPECTED_FILES)


def test_conflict_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "prompts" / "example.prompt.yaml").mkdir(parents=True)  # a folder where a file goes

    done = promptops("init", "--force", cwd=tmp_path)

    assert done.returncode == 2
    assert "prompts/example.prompt.yaml is a folder" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts"]


def test_target_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ScaffoldError, match="not a folder"):
        scaffold(tmp_path / "afile")


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs POSIX symlinks")
def test_force_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    project = tmp_path / "proj"
    project.mkdir()
    (project / "promptops.yaml").symlink_to(outside)  # dangling: following it would create outside.yaml

    kept = scaffold(project)
    assert kept.skipped == [PurePosixPath("promptops.yaml")]
    replaced = scaffold(project, force=True)

    assert replaced.overwritten == [PurePosixPath("promptops.yaml")]
    assert not outside.exists()
    assert not (project / "promptops.yaml").is_symlink()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_note_when_the_folder_is_not_the_top_of_a_git_repository(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)

    done = promptops("init", "services/bot", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "is not the top of its git repository" in done.stderr
    assert "cd services/bot && promptops lint" in done.stdout
    assert promptops("init", cwd=tmp_path).stderr == ""  # at the top: nothing to say


def test_pre_commit_config_uses_this_repositorys_hook() -> None:
    config = yaml.safe_load(template(".pre-commit-config.yaml"))
    (repo,) = config["repos"]
    assert repo["repo"] == "https://github.com/promptops/promptops"
    assert repo["rev"] == "v0.1.0"
    hook_ids = {hook["id"] for hook in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert [hook["id"] for hook in repo["hooks"]] == ["promptops-lint"]
    assert "promptops-lint" in hook_ids


def test_workflow_runs_the_pr_check_fork_safe_with_least_permissions() -> None:
    text = template(".github/workflows/promptops.yml").decode()
    workflow = yaml.safe_load(text)
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"pull_request"}
    assert "pull_request_target" in text  # the comment that explains why not
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    by_action = {step.get("uses", "").split("@")[0]: step for step in steps}
    assert by_action["actions/checkout"]["with"]["fetch-depth"] == 0  # the base commit must be there
    assert by_action["actions/cache"]["with"]["path"] == ".promptops/cache.db"
    check = by_action["promptops/promptops"]
    assert check["with"]["fail-on"] in ("error", "regression", "never")
    assert "secrets.OPENAI_API_KEY" in check["env"]["OPENAI_API_KEY"]
    assert not any("run" in step for step in steps)  # nothing from the event is expanded into a shell
