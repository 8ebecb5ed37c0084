"""Discovery, the project config walk, and content-addressed prompt versions."""

from __future__ import annotations

import subprocess
from pathlib import Path

from promptops.config import guarded_by
from promptops.discover import discover, find_config
from promptops.loader import Loader
from promptops.specs import EvalSuiteSpec, Gates, ProjectConfig, PromptSpec

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
    legacy = tmp_path / "p" / "legacy" / "b.prompt.yaml"
    assert discover(tmp_path, [legacy]) == [legacy]


def test_config_is_found_walking_up(tmp_path: Path) -> None:
    config = _write(tmp_path / "promptops.yaml", "{}\n")
    nested = tmp_path / "a" / "b" / "c"
    nested.mkdir(parents=True)
    assert find_config(nested) == config
    assert find_config(tmp_path.parent) != config


CONFIG = """\
paths: {include: [prompts], exclude: ["drafts/*"]}
defaults: {judge: openai/gpt-4o}
eval: {concurrency: 3, max_cost_usd: 5, confirm: 0}
gates: {max_cost_increase_pct: 10, preexisting: warn}
usage: {demo.answer: {calls_per_day: 2000}}
lint: {rules: {PO301: off}, render_limits: {timeout_s: 1}}
environments: [dev, prod]
"""


def test_config_sections_are_typed_once_with_values_as_written(tmp_path: Path) -> None:
    config = Loader(tmp_path).load(_write(tmp_path / "promptops.yaml", CONFIG)).spec
    assert isinstance(config, ProjectConfig)
    assert (config.paths.include, config.paths.exclude) == (("prompts",), ("drafts/*",))
    assert (config.defaults.judge, config.defaults.model) == ("openai/gpt-4o", None)
    eval_ = config.eval
    assert (eval_.concurrency, eval_.timeout_s, eval_.retries, eval_.cache) == (3, 60.0, 4, None)  # defaults filled
    assert eval_.max_cost_usd == 5 and isinstance(eval_.max_cost_usd, int)  # as written: reports print "$5"
    assert eval_.confirm == 0 and eval_.repeat is None  # 0 is set, not absent
    gates = config.gates
    assert (gates.max_cost_increase_pct, gates.pass_rate, gates.preexisting) == (10.0, None, "warn")
    assert config.calls_per_day == {"demo.answer": 2000}
    assert config.lint.rules == {"PO301": False} and config.lint.render_limits.timeout_s == 1
    assert config.environments == ["dev", "prod"]
    assert ProjectConfig(tmp_path, {}).environments == ["dev", "staging", "prod"]


def test_a_guarded_config_types_the_trusted_sections(tmp_path: Path) -> None:
    head = ProjectConfig(tmp_path, {"eval": {"concurrency": 200, "max_cost_usd": 999}, "gates": {"pass_rate": 0.5}})
    base = ProjectConfig(tmp_path, {"eval": {"max_cost_usd": 1}})
    guarded = guarded_by(head, base)
    assert (guarded.eval.concurrency, guarded.eval.max_cost_usd) == (8, 1)  # the base's section, defaults and all
    assert guarded.gates.pass_rate == 0.5  # gates are not guarded: the change's own


def test_a_suites_gates_override_the_projects(tmp_path: Path) -> None:
    suite = "prompt: demo.answer\ncases: [{id: a}]\nrepeat: 3\n" \
            "gates: {pass_rate: 0.9, max_p95_latency_ms: 800}\n"
    spec = Loader(tmp_path).load(_write(tmp_path / "demo.eval.yaml", suite)).spec
    assert isinstance(spec, EvalSuiteSpec)
    assert (spec.repeat, spec.confirm) == (3, None)
    project = ProjectConfig(tmp_path, {"gates": {"pass_rate": 0.5, "max_cost_increase_pct": 10}}).gates
    assert spec.gates.over(project).limits() == {"pass_rate": 0.9, "max_cost_increase_pct": 10.0,
                                                  "max_p95_latency_ms": 800.0}
    assert Gates().over(project) == project


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
