"""Discovery, the project config walk, and content-addressed prompt versions."""

from __future__ import annotations

import subprocess
from pathlib import Path

from promptops.discover import discover, find_config
from promptops.loader import Loader
from promptops.specs import PromptSpec

PROMPT = """\
# A comment that must not change the version.
id: demo.answer
model:
  name: openai/gpt-4o-mini
  params: {temperature: 0.2, max_tokens: 100}
inputs:
  type: object
  required: [question]
  properties:
    question: {type: string}
messages:
  - role: user
    content: "Q: {{ question }}"
"""

REORDERED = """\
messages:
  - content: "Q: {{ question }}"
    role: user
inputs: {type: object, properties: {question: {type: string}}, required: [question]}
model: {params: {max_tokens: 100, temperature: 0.2}, name: openai/gpt-4o-mini}   # flow style now
id: demo.answer
"""


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=root, check=True,
                   capture_output=True)


def _write(path: Path, text: str = "id: x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _names(found: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in found]


def test_discovers_by_suffix_and_skips_ignored_venvs_and_node_modules(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    _write(tmp_path / ".gitignore", "build/\n")
    _write(tmp_path / "prompts" / "a.prompt.yaml")
    _write(tmp_path / "deep" / "er" / "k.retrieval.yaml")
    _write(tmp_path / "evals" / "a.eval.yaml")
    _write(tmp_path / "promptops.yaml", "{}\n")
    _write(tmp_path / "notes.yaml")  # no known suffix
    _write(tmp_path / "build" / "gen.prompt.yaml")  # git-ignored
    _write(tmp_path / "node_modules" / "pkg" / "x.prompt.yaml")
    _write(tmp_path / "env" / "pyvenv.cfg", "home = /usr\n")  # a virtualenv under any name
    _write(tmp_path / "env" / "lib" / "y.prompt.yaml")
    _write(tmp_path / ".venv" / "z.prompt.yaml")
    found = _names(discover(tmp_path), tmp_path)
    assert sorted(found) == ["deep/er/k.retrieval.yaml", "evals/a.eval.yaml", "promptops.yaml", "prompts/a.prompt.yaml"]


def test_discovers_without_git_too(tmp_path: Path) -> None:
    _write(tmp_path / "a.prompt.yaml")
    _write(tmp_path / "node_modules" / "b.prompt.yaml")
    _write(tmp_path / "venv" / "c.prompt.yaml")
    assert _names(discover(tmp_path), tmp_path) == ["a.prompt.yaml"]


def test_explicit_files_and_exclude_patterns(tmp_path: Path) -> None:
    kept = _write(tmp_path / "p" / "a.prompt.yaml")
    _write(tmp_path / "p" / "legacy" / "b.prompt.yaml")
    assert discover(tmp_path, [tmp_path / "p"], exclude=["p/legacy/*"]) == [kept]
    assert discover(tmp_path, [tmp_path / "p" / "legacy" / "b.prompt.yaml"]) == [tmp_path / "p" / "legacy" / "b.prompt.yaml"]


def test_config_is_found_walking_up(tmp_path: Path) -> None:
    config = _write(tmp_path / "promptops.yaml", "{}\n")
    nested = tmp_path / "a" / "b" / "c"
    nested.mkdir(parents=True)
    assert find_config(nested) == config
    assert find_config(tmp_path.parent) != config


def _version(tmp_path: Path, name: str, text: str) -> str:
    path = _write(tmp_path / name, text)
    spec = Loader(tmp_path).load(path).spec
    assert isinstance(spec, PromptSpec)
    return spec.version


def test_version_ignores_comments_key_order_and_layout(tmp_path: Path) -> None:
    assert _version(tmp_path, "a.prompt.yaml", PROMPT) == _version(tmp_path, "b.prompt.yaml", REORDERED)


def test_version_changes_with_template_whitespace_and_values(tmp_path: Path) -> None:
    base = _version(tmp_path, "a.prompt.yaml", PROMPT)
    assert _version(tmp_path, "b.prompt.yaml", PROMPT.replace("Q: {{", "Q:  {{")) != base
    assert _version(tmp_path, "c.prompt.yaml", PROMPT.replace("0.2", "0.3")) != base
    assert len(base) == 12 and int(base, 16) >= 0
