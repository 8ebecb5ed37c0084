"""The git adapter: the one module that runs git or imports GitPython, and what its failures say."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers.repo import git as run_git
from promptops import git
from promptops.gitrefs import RefError, open_repo, resolve_refs

PACKAGE = Path(__file__).resolve().parent.parent / "promptops"
ADAPTER = PACKAGE / "git.py"


def _git_uses(path: Path) -> list[str]:
    """Where ``path`` imports GitPython, or spells a git command line (a list or tuple starting with "git")."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "git" for alias in node.names):
            found.append(f"{path.name}:{node.lineno}: import git")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "git":
            found.append(f"{path.name}:{node.lineno}: from {node.module} import")
        elif isinstance(node, (ast.List, ast.Tuple)) and node.elts and isinstance(node.elts[0], ast.Constant) \
                and node.elts[0].value == "git":
            found.append(f"{path.name}:{node.lineno}: a git command line")
    return found


def test_no_module_but_the_adapter_runs_git_or_imports_gitpython() -> None:
    offenders = [use for path in sorted(PACKAGE.rglob("*.py")) if path != ADAPTER for use in _git_uses(path)]
    assert offenders == []
    assert _git_uses(ADAPTER)  # the scan sees what it looks for: the adapter itself does both


def test_a_failed_command_is_a_git_error_naming_it_and_what_git_said(tmp_path: Path) -> None:
    with pytest.raises(git.GitError) as raised:
        git.run(tmp_path, "ls-tree", "-r", "HEAD")
    assert raised.value.command == "ls-tree"
    assert str(raised.value).startswith("git ls-tree failed: fatal: not a git repository")


def test_questions_with_a_fallback_answer_none_outside_a_repository(tmp_path: Path) -> None:
    assert git.toplevel(tmp_path) is None
    assert git.listed_files(tmp_path) is None
    assert git.grep_words(tmp_path, ["x"], ["*.yaml"]) is None
    assert git.Repository.find(tmp_path) is None


def test_commit_only_commits_exactly_the_paths_given(tmp_path: Path) -> None:
    run_git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "kept.txt").write_text("staged, not committed\n")
    (tmp_path / ".gitignore").write_text("ignored.txt\n")
    (tmp_path / "ignored.txt").write_text("asked for\n")
    run_git(tmp_path, "add", "kept.txt", ".gitignore")
    sha = git.commit_only(tmp_path, ["ignored.txt"], "only this")
    assert sha == run_git(tmp_path, "rev-parse", "HEAD").strip()
    assert run_git(tmp_path, "show", "--name-only", "--format=", "HEAD").split() == ["ignored.txt"]
    assert run_git(tmp_path, "diff", "--cached", "--name-only").split() == [".gitignore", "kept.txt"]
    with pytest.raises(git.GitError, match="^git add failed: fatal: pathspec 'missing.txt'") as raised:
        git.commit_only(tmp_path, ["missing.txt"], "nothing")
    assert raised.value.command == "add"


def test_refs_resolve_through_the_adapter_and_an_unknown_one_says_what_to_do(tmp_path: Path) -> None:
    run_git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.txt").write_text("one\n")
    run_git(tmp_path, "add", "-A")
    run_git(tmp_path, "commit", "-qm", "one")
    head = run_git(tmp_path, "rev-parse", "HEAD").strip()
    tree = run_git(tmp_path, "rev-parse", "HEAD^{tree}").strip()
    with open_repo(tmp_path / "a.txt") as repo:  # a path inside: found by searching upwards
        base, at_head = resolve_refs(repo, "main", "HEAD")
        assert (base.commit, base.tree, base.name) == (head, tree, head[:12])
        assert str(at_head) == f"HEAD ({head[:12]})"
        with pytest.raises(RefError, match=r"^base ref 'nope' is not a known commit, branch or tag\. Fetch it"):
            resolve_refs(repo, "nope", None)
    assert RefError is git.GitError  # one error type for whatever git cannot do
