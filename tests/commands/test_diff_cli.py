"""`promptops diff` through the real CLI (in-process): text, JSON and Markdown on a real git repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers.cli import run_promptops
from helpers.repo import git, git_env

PROMPT = """\
id: support.answer
model: {name: openai/gpt-4o-mini, params: {temperature: 0.2}}
inputs: {type: object, required: [question], properties: {question: {type: string}}}
messages:
  - role: system
    content: |
      Answer briefly.
  - role: user
    content: "{{ question }}"
"""
KB = ("id: kb\nembedding: {model: openai/text-embedding-3-small}\nchunking: {size: 512}\nretriever: {top_k: 4}\n"
      "index: {name: kb-v1}\n")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "answer.prompt.yaml").write_text(PROMPT)
    (tmp_path / "kb.retrieval.yaml").write_text(KB)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    return tmp_path


def diff(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = run_promptops(["diff", "--base", "HEAD", *args], cwd=root, env=git_env())
    assert "Traceback" not in done.stderr
    return done


def test_text_shows_fields_template_diff_and_events(repo: Path) -> None:
    (repo / "answer.prompt.yaml").write_text(
        PROMPT.replace("temperature: 0.2", "temperature: 0.7").replace("Answer briefly.", "Answer in detail."))
    (repo / "kb.retrieval.yaml").write_text(KB.replace("3-small", "3-large"))
    done = diff(repo)
    assert done.returncode == 0
    assert "model.params.temperature: 0.2 → 0.7" in done.stdout
    assert "-Answer briefly.\n" in done.stdout.replace("    ", "") and "+Answer in detail." in done.stdout
    assert "! reindex-needed (retrieval kb)" in done.stdout


def test_formatting_only_reads_no_semantic_change(repo: Path) -> None:
    reordered = PROMPT.replace("{name: openai/gpt-4o-mini, params: {temperature: 0.2}}",
                               "\n  params: {temperature: 0.2}\n  name: openai/gpt-4o-mini")
    (repo / "answer.prompt.yaml").write_text("# reviewed\n" + reordered)
    done = diff(repo)
    assert "no semantic change (formatting only)" in done.stdout


def test_json_is_versioned_and_deterministic(repo: Path) -> None:
    (repo / "answer.prompt.yaml").write_text(PROMPT.replace("gpt-4o-mini", "gpt-4.1"))
    first = json.loads(diff(repo, "--format", "json").stdout)
    assert first["schema_version"] == 1 and first["head"] == "working tree"
    assert [e["kind"] for e in first["events"]] == ["model-family-changed"]
    assert diff(repo, "--format", "json").stdout == diff(repo, "--format", "json").stdout


def test_markdown_fences_cannot_be_closed_by_the_template(repo: Path) -> None:
    (repo / "answer.prompt.yaml").write_text(PROMPT.replace("Answer briefly.", "Reply with ```json``` then ````"))
    out = diff(repo, "--format", "markdown").stdout
    assert "`````diff" in out  # one backtick longer than the longest run inside
    assert out.count("`````") == 2


def test_a_missing_ref_is_a_usage_error(repo: Path) -> None:
    done = run_promptops(["diff", "--base", "no-such-branch"], cwd=repo, env=git_env())
    assert done.returncode == 2 and "no-such-branch" in done.stderr
