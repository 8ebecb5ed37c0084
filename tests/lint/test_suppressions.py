"""Inline directives, severities and `off` from promptops.yaml, per_file_ignores, --strict."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.cli import cli_env, run_promptops
from helpers.lint import assert_no_traceback
from promptops.lint import lint

# Line 12 uses an undeclared variable (PO202, error); line 11 interpolates a variable into a
# system message (PO602, warning); line 8 declares an input nobody uses (PO203, warning).
PROMPT = """\
id: support.answer
model: {name: openai/gpt-4o-mini}
inputs:
  type: object
  required: [question]
  properties:
    question: {type: string}
    tone: {type: string}<8>
messages:
  - role: system
    content: "Answer {{ question }}"<11>
  - {role: user, content: "{{ user_name }}"}<12>
"""
ALL = [("PO203", 8, "warning"), ("PO602", 11, "warning"), ("PO202", 12, "error")]


def _prompt(**directives: str) -> str:
    text = PROMPT
    for line in (8, 11, 12):
        directive = directives.get(f"directive_{line}")
        text = text.replace(f"<{line}>", "  " + directive if directive else "")
    return text


def _project(tmp_path: Path, prompt: str, config: str | None = "defaults: {model: openai/gpt-4o-mini}\n",
             name: str = "answer.prompt.yaml") -> Path:
    if config is not None:
        (tmp_path / "promptops.yaml").write_text(config)
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prompt)
    return tmp_path


def _found(folder: Path, *paths: str, cwd: Path | None = None) -> list[tuple[str, int, str]]:
    run = lint([Path(p) for p in paths], cwd=cwd or folder)
    assert not run.config_errors, run.config_errors
    return [(f.code, f.line, str(f.severity)) for f in run.findings]


def test_baseline_without_directives(tmp_path: Path) -> None:
    assert _found(_project(tmp_path, _prompt())) == ALL


# -- inline directives ----------------------------------------------------------------------

@pytest.mark.parametrize("directive, gone", [
    ("# promptops: disable=PO202", {"PO202"}),
    ("# promptops: disable=undeclared-variable", {"PO202"}),
    ("#promptops:disable=po202", {"PO202"}),
    ("# promptops: disable=PO602", set()),  # another code: nothing on this line to silence
    ("# promptops: disable=PO202, PO602", {"PO202"}),
])
def test_disable_on_the_same_line(tmp_path: Path, directive: str, gone: set[str]) -> None:
    found = _found(_project(tmp_path, _prompt(directive_12=directive)))
    assert found == [f for f in ALL if f[0] not in gone]


def test_disable_next_line(tmp_path: Path) -> None:
    text = _prompt().replace("  - {role: user", "  # promptops: disable-next-line=PO202\n  - {role: user")
    found = _found(_project(tmp_path, text))
    assert found == [f for f in ALL if f[0] != "PO202"]


def test_disable_next_line_reaches_only_the_next_line(tmp_path: Path) -> None:
    text = _prompt().replace("  - {role: user", "  # promptops: disable-next-line=PO202\n\n  - {role: user")
    found = _found(_project(tmp_path, text))
    assert ("PO202", 14, "error") in found


def test_disable_on_the_line_does_not_reach_the_next(tmp_path: Path) -> None:
    found = _found(_project(tmp_path, _prompt(directive_11="# promptops: disable=PO202")))
    assert found == ALL


@pytest.mark.parametrize("where", ["top", "bottom"])
def test_disable_file(tmp_path: Path, where: str) -> None:
    directive = "# promptops: disable-file=PO602,unused-input\n"
    text = directive + _prompt() if where == "top" else _prompt() + directive
    shift = 1 if where == "top" else 0
    assert _found(_project(tmp_path, text)) == [("PO202", 12 + shift, "error")]


def test_disable_file_applies_to_its_own_file_only(tmp_path: Path) -> None:
    folder = _project(tmp_path, "# promptops: disable-file=PO202\n" + _prompt())
    (folder / "other.prompt.yaml").write_text(_prompt().replace("support.answer", "other"))
    run = lint([], cwd=folder)
    assert [(f.path, f.code) for f in run.findings if f.code == "PO202"] == [("other.prompt.yaml", "PO202")]


def test_directive_as_a_jinja_comment_inside_a_template(tmp_path: Path) -> None:
    """Inside a block scalar a YAML comment would be prompt text; a Jinja comment is not."""
    text = _prompt().replace(
        '  - {role: user, content: "{{ user_name }}"}',
        "  - role: user\n    content: |\n      Hi {{ user_name }} {# promptops: disable=PO202 #}\n"
        "      Bye {{ user_name }}",
    )
    found = _found(_project(tmp_path, text))
    assert [f for f in found if f[0] == "PO202"] == []  # reported once, at its first use (line 14)
    unsuppressed = text.replace(" {# promptops: disable=PO202 #}", "")
    assert ("PO202", 14, "error") in _found(_project(tmp_path, unsuppressed))


def test_directive_silences_loader_findings(tmp_path: Path) -> None:
    text = _prompt().replace("id: support.answer", "id: support.answer\nowner: me  # promptops: disable=PO110")
    assert _found(_project(tmp_path, text)) == []  # the spec was not built, so no rule ran
    without = text.replace("  # promptops: disable=PO110", "")
    assert [f[0] for f in _found(_project(tmp_path, without))] == ["PO110"]


def test_unknown_code_in_a_directive_is_harmless(tmp_path: Path) -> None:
    assert _found(_project(tmp_path, _prompt(directive_12="# promptops: disable=PO999,nonsense"))) == ALL


# -- severities from promptops.yaml -------------------------------------------------------

def _config(rules: str) -> str:
    return f"lint:\n  rules:\n{rules}"


@pytest.mark.parametrize("rules, expected", [
    ("    PO203: error\n", [("PO203", 8, "error"), ("PO602", 11, "warning"), ("PO202", 12, "error")]),
    ("    unused-input: error\n", [("PO203", 8, "error"), ("PO602", 11, "warning"), ("PO202", 12, "error")]),
    ("    PO202: warning\n", [("PO203", 8, "warning"), ("PO602", 11, "warning"), ("PO202", 12, "warning")]),
    ("    PO202: 'off'\n", [("PO203", 8, "warning"), ("PO602", 11, "warning")]),
    ("    undeclared-variable: \"off\"\n    system-interpolation: 'off'\n", [("PO203", 8, "warning")]),
    ("    PO602: error\n    PO203: 'off'\n    PO202: warning\n", [("PO602", 11, "error"), ("PO202", 12, "warning")]),
])
def test_severities_by_code_and_by_name(tmp_path: Path, rules: str, expected: list) -> None:
    assert _found(_project(tmp_path, _prompt(), config=_config(rules))) == expected


@pytest.mark.parametrize("rules", ["    PO202: off\n", "    undeclared-variable: off\n"])
def test_unquoted_off(tmp_path: Path, rules: str) -> None:
    assert _found(_project(tmp_path, _prompt(), config=_config(rules))) == [
        ("PO203", 8, "warning"), ("PO602", 11, "warning"),
    ]


def test_severity_changes_reach_every_format_and_the_exit_code(tmp_path: Path) -> None:
    folder = _project(tmp_path, _prompt(), config=_config("    PO202: warning\n"))
    result = run_promptops(["lint", "--format", "json"], cwd=folder, env=cli_env())
    assert result.returncode == 0, result.stdout  # only warnings left
    assert {f["severity"] for f in result.json()["findings"]} == {"warning"}
    strict = run_promptops(["lint", "--format", "sarif", "--strict"], cwd=folder, env=cli_env())
    assert strict.returncode == 1
    assert '"level": "error"' not in strict.stdout.split('"rules"')[0]


def test_off_for_a_loader_rule(tmp_path: Path) -> None:
    text = _prompt().replace("id: support.answer", "id: support.answer\nowner: me")
    assert _found(_project(tmp_path, text, config=_config("    unknown-key: 'off'\n"))) == []


@pytest.mark.parametrize("rules", ["    PO202: fatal\n", "    PO2O2: 'off'\n", "    Undeclared_Variable: 'off'\n"])
def test_invalid_rules_section_is_a_config_error(tmp_path: Path, rules: str) -> None:
    folder = _project(tmp_path, _prompt(), config=_config(rules))
    result = run_promptops(["lint", "--format", "json"], cwd=folder, env=cli_env())
    assert result.returncode == 2, result.stdout
    assert_no_traceback(result)
    assert [f["path"] for f in result.json()["findings"]] == ["promptops.yaml"]


@pytest.mark.parametrize("config", [
    "lint:\n  rules:\n    undeclared-variabel: 'off'\n",
    "lint:\n  rules:\n    PO299: 'off'\n",
    "lint:\n  per_file_ignores:\n    '*.prompt.yaml': [PO299]\n",
])
def test_unknown_rule_in_config_is_reported(tmp_path: Path, config: str) -> None:
    folder = _project(tmp_path, _prompt(), config=config)
    result = run_promptops(["lint", "--format", "json"], cwd=folder, env=cli_env())
    assert result.returncode == 2, result.stdout
    assert [f["path"] for f in result.json()["findings"]] == ["promptops.yaml"]


# -- per_file_ignores ----------------------------------------------------------------------

PER_FILE = "lint:\n  per_file_ignores:\n    'legacy/*.prompt.yaml': [PO202, PO602]\n"


def _legacy_project(tmp_path: Path) -> Path:
    folder = _project(tmp_path, _prompt(), config=PER_FILE)
    (folder / "legacy").mkdir()
    (folder / "legacy" / "old.prompt.yaml").write_text(_prompt().replace("support.answer", "legacy.old"))
    return folder


def test_per_file_ignores(tmp_path: Path) -> None:
    run = lint([], cwd=_legacy_project(tmp_path))
    got = [(f.path, f.code) for f in run.findings]
    assert got == [
        ("answer.prompt.yaml", "PO203"), ("answer.prompt.yaml", "PO602"), ("answer.prompt.yaml", "PO202"),
        ("legacy/old.prompt.yaml", "PO203"),
    ]


def test_per_file_ignores_are_relative_to_promptops_yaml_not_the_cwd(tmp_path: Path) -> None:
    folder = _legacy_project(tmp_path)
    run = lint([Path("old.prompt.yaml")], cwd=folder / "legacy")
    assert [(f.path, f.code) for f in run.findings] == [("old.prompt.yaml", "PO203")]
    run = lint([Path("legacy/old.prompt.yaml"), Path("answer.prompt.yaml")], cwd=folder)
    assert sorted({f.code for f in run.findings if f.path == "legacy/old.prompt.yaml"}) == ["PO203"]


def test_per_file_ignores_only_match_their_glob(tmp_path: Path) -> None:
    folder = _legacy_project(tmp_path)
    (folder / "legacy" / "deeper").mkdir()
    (folder / "legacy" / "deeper" / "x.prompt.yaml").write_text(_prompt().replace("support.answer", "deeper.x"))
    run = lint([], cwd=folder)
    codes = sorted(f.code for f in run.findings if f.path == "legacy/deeper/x.prompt.yaml")
    # fnmatch's '*' also crosses '/', so legacy/* covers legacy/deeper/x too (like ruff's per-file-ignores)
    assert codes == ["PO203"]


# -- --strict and exit codes ----------------------------------------------------------------

def test_strict_turns_warnings_into_a_failing_exit(tmp_path: Path) -> None:
    folder = _project(tmp_path, _prompt(directive_12="# promptops: disable=PO202"))
    relaxed = run_promptops(["lint"], cwd=folder, env=cli_env())
    strict = run_promptops(["lint", "--strict"], cwd=folder, env=cli_env())
    assert relaxed.returncode == 0, relaxed.stdout
    assert strict.returncode == 1, strict.stdout
    assert relaxed.stdout == strict.stdout
    assert relaxed.stdout.splitlines()[-1] == "0 errors, 2 warnings in 2 files."


def test_strict_on_a_clean_project_exits_0(tmp_path: Path) -> None:
    text = _prompt(directive_12="# promptops: disable=PO202").replace("    tone: {type: string}\n", "")
    folder = _project(tmp_path, text.replace("role: system", "role: user"))
    result = run_promptops(["lint", "--strict"], cwd=folder, env=cli_env())
    assert result.returncode == 0, result.stdout
    assert result.stdout == "All clean: 2 files checked.\n"


def test_errors_exit_1_with_or_without_strict(tmp_path: Path) -> None:
    folder = _project(tmp_path, _prompt())
    assert run_promptops(["lint"], cwd=folder, env=cli_env()).returncode == 1
    assert run_promptops(["lint", "--strict"], cwd=folder, env=cli_env()).returncode == 1
