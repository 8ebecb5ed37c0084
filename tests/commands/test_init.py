"""`promptops init`: the scaffold lints clean and never clobbers a user's files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from helpers.cli import run_promptops
from helpers.repo import git, git_env
from promptops.lockfile import AUDIT_LOG, LOCK_NAME, MUTEX, RELEASES
from promptops.resultcache import DEFAULT_PATH as CACHE
from promptops.retrieval.pipeline import INDEX_FOLDER
from promptops.scaffold import ScaffoldError, scaffold, template_files, template_root
from promptops.testing import StubServer

REPO = Path(__file__).resolve().parents[2]
EXPECTED_FILES = {
    ".gitignore",
    "promptops.yaml",
    "prompts/example.prompt.yaml",
    "evals/example.eval.yaml",
    ".pre-commit-config.yaml",
    ".github/workflows/promptops.yml",
}


def promptops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command line, in this process, as a user would run it."""
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}  # keep the text format
    return run_promptops(args, cwd=cwd, env=env)


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


def test_pre_commit_config_runs_the_installed_promptops_with_the_manifests_hooks() -> None:
    """A local hook needs no published repository; each one matches the hook of the same id in the manifest."""
    from pre_commit.clientlib import load_config, load_manifest

    (repo,) = load_config(str(template_root() / ".pre-commit-config.yaml"))["repos"]  # validates, fills defaults
    assert repo["repo"] == "local"
    published = {hook["id"]: hook for hook in load_manifest(str(REPO / ".pre-commit-hooks.yaml"))}
    assert [hook["id"] for hook in repo["hooks"]] == ["promptops-lint", "promptops-cost"]
    # `system` runs `promptops` from the PATH; pre-commit 4.4 renamed it `unsupported`, which 3.x rejects.
    (written,) = yaml.safe_load(template(".pre-commit-config.yaml"))["repos"]
    assert {hook["language"] for hook in written["hooks"]} == {"system"}
    for hook in repo["hooks"]:
        same = published[hook["id"]]
        for key in ("name", "entry", "files", "pass_filenames", "require_serial", "verbose"):
            assert hook.get(key, same[key]) == same[key], (hook["id"], key)


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
    # the eval cache and the retrieval index (rebuilt from cached vectors otherwise, still without a call)
    assert by_action["actions/cache"]["with"]["path"].split() == [".promptops/cache.db", ".promptops/index"]
    check = by_action["promptops/promptops"]
    assert check["with"]["fail-on"] in ("error", "regression", "never")
    assert "secrets.OPENAI_API_KEY" in check["env"]["OPENAI_API_KEY"]
    assert not any("run" in step for step in steps)  # nothing from the event is expanded into a shell


# --- .gitignore: local files stay out of git, promotions stay in -----------------------------------

# What a retrieval run writes: each index folder (by config id and build key), a save or prune under way.
INDEX_FILES = [f"{INDEX_FOLDER}/support_kb/0123abcd/{name}"
               for name in ("vectors.npy", "chunks.jsonl", "manifest.json")]
INDEX_FILES += [f"{INDEX_FOLDER}/support_kb/.0123abcd.x1y2/vectors.npy",
                f"{INDEX_FOLDER}/support_kb/.0123abcd.pruned-42-7/manifest.json"]
LOCAL_FILES = [CACHE, f"{CACHE}-wal", f"{CACHE}-shm", f"{CACHE}-journal", MUTEX, ".promptops/report/report.md",
               *INDEX_FILES]
COMMITTED_FILES = [f"{RELEASES}/example.summarize/0123456789ab.json", AUDIT_LOG, LOCK_NAME]


def template_patterns() -> list[str]:
    return [line for line in template(".gitignore").decode().splitlines() if line and not line.startswith("#")]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_gitignore_ignores_local_files_and_keeps_promotions_tracked(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    scaffold(tmp_path)

    def ignored(path: str) -> bool:
        done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=tmp_path, env=git_env())
        assert done.returncode in (0, 1), done
        return done.returncode == 0

    assert [path for path in LOCAL_FILES if not ignored(path)] == []
    assert [path for path in COMMITTED_FILES if ignored(path)] == []


def test_an_existing_gitignore_gets_only_the_missing_lines_appended(tmp_path: Path) -> None:
    mine = "node_modules/\n.promptops/cache.db\n*.log"  # no newline at the end
    (tmp_path / ".gitignore").write_text(mine)

    first = scaffold(tmp_path, force=True)  # --force replaces files, never a .gitignore
    text = (tmp_path / ".gitignore").read_text()

    assert first.appended == [PurePosixPath(".gitignore")]
    assert text.startswith(mine + "\n\n# promptops:")
    lines = text.splitlines()
    assert lines.count(".promptops/cache.db") == 1
    assert [p for p in template_patterns() if p not in lines] == []
    second = scaffold(tmp_path, force=True)
    assert PurePosixPath(".gitignore") in second.unchanged
    assert (tmp_path / ".gitignore").read_text() == text


def test_init_says_what_it_did_to_the_gitignore(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text(".promptops/\n")

    done = promptops("init", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert " appended  .gitignore" in done.stdout
    assert "ignores the whole .promptops/ folder" in done.stderr  # releases and the audit log would be lost
    assert "unchanged  .gitignore" in promptops("init", cwd=tmp_path).stdout


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs POSIX symlinks")
def test_a_symlinked_gitignore_is_not_written_through(tmp_path: Path) -> None:
    elsewhere = tmp_path / "shared-ignore"
    elsewhere.write_text("*.tmp\n")
    project = tmp_path / "proj"
    project.mkdir()
    (project / ".gitignore").symlink_to(elsewhere)

    result = scaffold(project, force=True)

    assert PurePosixPath(".gitignore") in result.skipped
    assert elsewhere.read_text() == "*.tmp\n"


# --- the scaffold's first commit, through its own hooks -------------------------------------------

BROKEN_PROMPT = """\
id: broken
model: {name: openai/gpt-4o-mini}
inputs: {type: object, required: [name], properties: {name: {type: string}}}
messages:
  - {role: user, content: "Say hello to {{ name }} from {{ company }}."}
"""


def hook_env(tmp_path: Path) -> dict[str, str]:
    """git with an isolated config, and the PATH a user has after activating the virtualenv promptops is in."""
    scripts = Path(sys.executable).parent
    assert shutil.which("promptops", path=str(scripts)), f"no promptops script in {scripts}: pip install -e ."
    env = git_env(PATH=f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}",
                  PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"), PRE_COMMIT_COLOR="never")
    for name in ("SKIP", "GITHUB_ACTIONS", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)  # SKIP=promptops-lint would skip the very hook under test
    return env


def run(cwd: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=180)
    done.output = done.stdout + done.stderr  # type: ignore[attr-defined]
    return done


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_first_commit_passes_through_the_scaffolds_hooks(tmp_path: Path) -> None:
    env = hook_env(tmp_path)
    project = tmp_path / "proj"
    project.mkdir()
    git(project, "init", "-q")
    assert run(project, env, "promptops", "init").returncode == 0
    installed = run(project, env, sys.executable, "-m", "pre_commit", "install")
    assert installed.returncode == 0, installed.output

    git(project, "add", "-A")
    first = run(project, env, "git", "commit", "-m", "promptops init")

    assert first.returncode == 0, first.output
    assert re.search(r"promptops lint\.+Passed", first.output), first.output
    assert re.search(r"promptops cost \(staged changes\)\.+Passed", first.output), first.output
    assert "example.summarize (added)" in first.output  # the cost hook's table
    assert git(project, "status", "--porcelain") == ""

    (project / "prompts" / "broken.prompt.yaml").write_text(BROKEN_PROMPT)
    git(project, "add", "-A")
    second = run(project, env, "git", "commit", "-m", "a broken prompt")

    assert second.returncode == 1, second.output
    assert re.search(r"promptops lint\.+Failed", second.output), second.output
    assert re.search(r"prompts/broken\.prompt\.yaml:5:\d+: PO202 ", second.output), second.output
    assert git(project, "log", "--format=%s") == "promptops init\n"  # the commit was refused


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_after_an_eval_and_a_promotion_git_sees_only_what_must_be_committed(tmp_path: Path) -> None:
    env = hook_env(tmp_path) | {"OPENAI_API_KEY": "sk-test"}
    git(tmp_path, "init", "-q")
    scaffold(tmp_path)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "promptops init")

    with StubServer(default_reply="- dark mode\n- a certificate expired") as stub:
        evaluated = run(tmp_path, env, "promptops", "eval", "--no-base", "--all", "--api-base", stub.base_url)
        assert evaluated.returncode in (0, 1), evaluated.output  # 1: a gate failed, which is not the point here
        promoted = run(tmp_path, env, "promptops", "promote", "example.summarize", "--to", "dev",
                       "--api-base", stub.base_url, "--force", "--reason", "first release")
        assert promoted.returncode == 0, promoted.output
    assert (tmp_path / CACHE).is_file() and (tmp_path / MUTEX).is_file()

    status = git(tmp_path, "status", "--porcelain", "--untracked-files=all").splitlines()
    release = f"{RELEASES}/example.summarize/"
    assert sorted(line.split(" ", 1)[1] for line in status if not line.split(" ", 1)[1].startswith(release)) == [
        AUDIT_LOG, LOCK_NAME]
    assert [line for line in status if release in line and line.startswith("?? ")], status  # the snapshot
