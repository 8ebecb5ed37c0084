"""Deliberately broken input: every fixture yields its code at the right line, through the
real CLI, with exit 1 (findings) or 2 (unusable input), no traceback and no hang.

Fixtures live in tests/fixtures/bad/: a single file, or a project folder with a
promptops.yaml where a rule needs other files. Each declares what it expects in
its first line, e.g. ``# expect: PO101 line 4`` or
``# expect: PO505 data/cases.jsonl line 2 "invalid JSON"; exit 2``. Inputs that
cannot hold a comment (binary, non-UTF-8, huge, symlinks, 100,000-level nesting)
are generated below into tmp_path.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from _linthelp import (
    CLI_TIMEOUT_S,
    Case,
    CliResult,
    assert_no_traceback,
    discover_cases,
    parse_expectations,
    run_cli,
)

CASES = discover_cases()
CASE_IDS = [case.name for case in CASES]

# Fixtures whose findings differ from the expectation because of a known bug in
# promptops (fixture name -> "BUG: ..."); their exit-code / no-traceback checks still run.
KNOWN_FINDING_BUGS: dict[str, str] = {}


# -- running every fixture once, in parallel --------------------------------------------

@pytest.fixture(scope="module")
def cli_results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The CLI's result for each selected fixture; all runs start at once (2 at a time per core)."""
    wanted = {
        item.callspec.params["case"].name
        for item in request.session.items
        if hasattr(item, "callspec") and isinstance(item.callspec.params.get("case"), Case)
    }
    base = tmp_path_factory.mktemp("bad")
    pool = ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 2))
    futures: dict[str, Future[tuple[Path, CliResult]]] = {}

    def run(case: Case) -> tuple[Path, CliResult]:
        folder, paths = case.copy_to(base)
        return folder, run_cli(["lint", "--strict", "--format", "json", *paths], cwd=folder)

    for case in CASES:
        if case.name in wanted:
            futures[case.name] = pool.submit(run, case)
    yield futures
    pool.shutdown(wait=True)


def _result(cli_results: dict, case: Case) -> tuple[Path, CliResult]:
    return cli_results[case.name].result(timeout=CLI_TIMEOUT_S * 4)


def _param(case: Case, bugs: dict[str, str]) -> object:
    marks = [pytest.mark.xfail(reason=bugs[case.name], strict=True)] if case.name in bugs else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(c, KNOWN_FINDING_BUGS) for c in CASES])
def test_fixture_yields_its_codes_at_the_right_lines(case: Case, cli_results: dict) -> None:
    _, result = _result(cli_results, case)
    report = result.json()
    found = {(f["path"], f["code"], f["line"]): f for f in report["findings"]}
    expected = {(e.path, e.code, e.line): e for e in case.expected}
    assert sorted(found) == sorted(expected), f"findings differ:\n{result.stdout}"
    for key, expectation in expected.items():
        finding = found[key]
        assert finding["severity"] == expectation.severity, finding
        if expectation.message is not None:
            same_place = [f["message"] for f in report["findings"] if (f["path"], f["code"], f["line"]) == key]
            assert any(expectation.message in m for m in same_place), (expectation.message, same_place)
    assert report["summary"]["errors"] == sum(f["severity"] == "error" for f in report["findings"])


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_fixture_exit_code_no_traceback_no_hang(case: Case, cli_results: dict) -> None:
    _, result = _result(cli_results, case)
    assert result.returncode == case.exit_code, (result.returncode, result.stdout, result.stderr)
    assert_no_traceback(result)
    assert result.seconds < CLI_TIMEOUT_S / 2, f"took {result.seconds:.1f} s"
    if case.exit_code == 1:
        assert result.stderr == ""


def test_every_rule_has_a_broken_fixture() -> None:
    from promptops.lint.registry import load_rules

    covered = {e.code for case in CASES for e in case.expected}
    missing = sorted(code for code in load_rules() if code not in covered and code != "PO100")
    # PO100 (unreadable files) is covered by the generated inputs below.
    assert missing == []


def test_expectation_syntax() -> None:
    items, exit_code = parse_expectations(
        '# expect: PO101 line 4; PO505 data/x.jsonl line 2 warning "bad"; exit 2', "a.prompt.yaml"
    )
    assert exit_code == 2
    assert [(i.path, i.code, i.line, i.severity, i.message) for i in items] == [
        ("a.prompt.yaml", "PO101", 4, "error", None),
        ("data/x.jsonl", "PO505", 2, "warning", "bad"),
    ]
    with pytest.raises(ValueError):
        parse_expectations("# PO101 line 4", "a.prompt.yaml")
    with pytest.raises(ValueError):
        parse_expectations("# expect: PO101 somewhere", "a.prompt.yaml")


def test_python_tag_is_never_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture's tag would run `touch PWNED-python-tag` in the current directory."""
    from promptops.yamlparse import YamlError, parse

    source = Path(__file__).parent / "fixtures" / "bad" / "python_tag.prompt.yaml"
    assert "touch PWNED-python-tag" in source.read_text(encoding="utf-8")
    (tmp_path / "python_tag.prompt.yaml").write_bytes(source.read_bytes())
    result = run_cli(["lint", "python_tag.prompt.yaml"], cwd=tmp_path)
    assert result.returncode == 1
    assert "PO103" in result.stdout
    monkeypatch.chdir(tmp_path)
    with pytest.raises(YamlError) as raised:
        parse(source.read_text(encoding="utf-8"))
    assert raised.value.code == "PO103"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["python_tag.prompt.yaml"]


# -- generated inputs that cannot carry a comment -------------------------------------------

GOOD = b"id: fine\nmodel: {name: openai/gpt-4o-mini}\nmessages:\n  - role: user\n    content: hi\n"


def _lint_json(folder: Path, *paths: str) -> tuple[CliResult, list[dict]]:
    result = run_cli(["lint", "--format", "json", *paths], cwd=folder)
    assert_no_traceback(result)
    assert result.returncode in (1, 2), (result.returncode, result.stdout, result.stderr)
    return result, result.json()["findings"]


def _only(findings: list[dict]) -> dict:
    assert len(findings) == 1, findings
    return findings[0]


def test_non_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "latin1.prompt.yaml").write_bytes(
        b"id: latin1\nmodel: {name: openai/gpt-4o-mini}\nmessages: [{role: user, content: caf\xe9}]\n"
    )
    _, findings = _lint_json(tmp_path, "latin1.prompt.yaml")
    finding = _only(findings)
    assert (finding["path"], finding["code"], finding["line"]) == ("latin1.prompt.yaml", "PO100", 3)
    assert "UTF-8" in finding["message"]


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "bom.prompt.yaml").write_bytes(b"\xef\xbb\xbf" + GOOD)
    result = run_cli(["lint", "--format", "json", "bom.prompt.yaml"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.json()["findings"] == []


@pytest.mark.parametrize("content", [
    pytest.param(bytes(range(256)) * 4, id="random-bytes"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64, id="png"),
    pytest.param(GOOD.decode().encode("utf-16"), id="utf-16"),
])
def test_binary_file(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "blob.prompt.yaml").write_bytes(content)
    _, findings = _lint_json(tmp_path, "blob.prompt.yaml")
    finding = _only(findings)
    assert (finding["code"], finding["line"]) == ("PO100", 1)
    assert "binary" in finding["message"]


def test_file_over_one_megabyte_is_not_read(tmp_path: Path) -> None:
    # Valid YAML with a secret and an unknown key: if the file were read, other codes would show.
    filler = b"# " + b"x" * 1_000_000 + b"\n"
    (tmp_path / "huge.prompt.yaml").write_bytes(GOOD + b"api_key: sk-proj-" + b"A" * 40 + b"\n" + filler)
    result, findings = _lint_json(tmp_path, "huge.prompt.yaml")
    finding = _only(findings)
    assert (finding["path"], finding["code"], finding["line"]) == ("huge.prompt.yaml", "PO100", 1)
    assert "1,000,000" in finding["message"]
    assert result.seconds < 5


def test_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    padding = 1_000_000 - len(GOOD) - 1
    (tmp_path / "big.prompt.yaml").write_bytes(GOOD + b"#" + b"x" * (padding - 2) + b"\n")
    assert (tmp_path / "big.prompt.yaml").stat().st_size <= 1_000_000
    result = run_cli(["lint", "--format", "json", "big.prompt.yaml"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.json()["findings"] == []


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "zero.prompt.yaml").write_bytes(b"")
    _, findings = _lint_json(tmp_path, "zero.prompt.yaml")
    finding = _only(findings)
    assert (finding["code"], finding["line"]) == ("PO105", 1)


def _project_with_outside(tmp_path: Path) -> tuple[Path, Path]:
    repo = tmp_path / "repo"
    outside = tmp_path / "outside"
    repo.mkdir()
    outside.mkdir()
    (repo / "promptops.yaml").write_text("defaults: {model: openai/gpt-4o-mini}\n")
    (repo / "fine.prompt.yaml").write_bytes(GOOD)
    # Something that would produce findings (and leak a secret) if it were ever read.
    (outside / "target.prompt.yaml").write_text(
        "id: Outside Secret\nmodel: {name: x}\nmessages: [{role: user, content: 'sk-proj-OUTSIDEOUTSIDEOUTSIDE1234'}]\n"
    )
    return repo, outside


@pytest.mark.parametrize("explicit", [False, True], ids=["discovered", "named"])
def test_symlink_leaving_the_repository_is_never_read(tmp_path: Path, explicit: bool) -> None:
    repo, outside = _project_with_outside(tmp_path)
    (repo / "evil.prompt.yaml").symlink_to(outside / "target.prompt.yaml")
    result, findings = _lint_json(repo, *(["evil.prompt.yaml"] if explicit else []))
    finding = _only(findings)
    assert (finding["path"], finding["code"], finding["line"]) == ("evil.prompt.yaml", "PO100", 1)
    assert "symlink" in finding["message"]
    assert "OUTSIDE" not in result.stdout + result.stderr


def test_symlink_to_a_fifo_outside_is_never_opened(tmp_path: Path) -> None:
    """Opening a FIFO with no writer blocks for ever: a read would hang until the timeout."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    repo, outside = _project_with_outside(tmp_path)
    os.mkfifo(outside / "pipe")
    (repo / "pipe.prompt.yaml").symlink_to(outside / "pipe")
    _, findings = _lint_json(repo)
    assert [(f["path"], f["code"]) for f in findings] == [("pipe.prompt.yaml", "PO100")]


def test_symlinked_folder_leaving_the_repository_is_not_searched(tmp_path: Path) -> None:
    repo, outside = _project_with_outside(tmp_path)
    (repo / "linked").symlink_to(outside, target_is_directory=True)
    result = run_cli(["lint", "--format", "json"], cwd=repo)
    assert_no_traceback(result)
    assert "OUTSIDE" not in result.stdout
    assert all(not f["path"].startswith("linked") for f in result.json()["findings"])


def test_file_named_through_a_symlinked_folder_is_not_read(tmp_path: Path) -> None:
    repo, outside = _project_with_outside(tmp_path)
    (repo / "linked").symlink_to(outside, target_is_directory=True)
    result, findings = _lint_json(repo, "linked/target.prompt.yaml")
    assert "OUTSIDE" not in result.stdout
    assert [(f["code"]) for f in findings] == ["PO100"]


def test_symlink_inside_the_repository_is_followed(tmp_path: Path) -> None:
    repo, _ = _project_with_outside(tmp_path)
    (repo / "alias.prompt.yaml").symlink_to(repo / "fine.prompt.yaml")
    result = run_cli(["lint", "--format", "json", "alias.prompt.yaml"], cwd=repo)
    assert result.returncode == 0, result.stdout
    assert result.json()["findings"] == []


DEPTH = 100_000


@pytest.mark.parametrize("text", [
    pytest.param("[" * DEPTH + "]" * DEPTH + "\n", id="flow-sequences"),
    pytest.param("{a: " * DEPTH + "1" + "}" * DEPTH + "\n", id="flow-mappings"),
    pytest.param("id: x\nmessages: " + "[" * DEPTH + "\n", id="flow-unclosed"),
    pytest.param("key: " + "[{" * (DEPTH // 2) + "\n", id="flow-mixed"),
])
def test_deep_flow_nesting_does_not_crash(tmp_path: Path, text: str) -> None:
    (tmp_path / "deep.prompt.yaml").write_text(text)
    result, findings = _lint_json(tmp_path, "deep.prompt.yaml")
    assert result.returncode == 1
    finding = _only(findings)
    assert (finding["code"], finding["line"]) in {("PO104", 1), ("PO104", 2)}, finding


def test_deep_block_mapping_nesting(tmp_path: Path) -> None:
    # As deep as block style gets under the 1 MB limit with one-space indents.
    levels = 1_300
    text = "".join(" " * i + "a:\n" for i in range(levels)) + " " * levels + "b: 1\n"
    assert len(text) < 1_000_000
    (tmp_path / "deep.prompt.yaml").write_text(text)
    _, findings = _lint_json(tmp_path, "deep.prompt.yaml")
    finding = _only(findings)
    assert (finding["code"], finding["line"]) == ("PO104", 66)


@pytest.mark.parametrize("text", [
    pytest.param("- " * DEPTH + "x\n", id="block-sequences"),
    pytest.param("messages:\n" + "- " * DEPTH + "x\n", id="block-sequences-under-key"),
])
def test_deep_block_sequence_nesting_does_not_crash(tmp_path: Path, text: str) -> None:
    (tmp_path / "deep.prompt.yaml").write_text(text)
    result = run_cli(["lint", "--format", "json", "deep.prompt.yaml"], cwd=tmp_path)
    assert result.returncode not in (-signal.SIGSEGV, 128 + signal.SIGSEGV), "the process crashed (SIGSEGV)"
    assert result.returncode == 1, (result.returncode, result.stderr[-500:])
    assert_no_traceback(result)
    assert _only(result.json()["findings"])["code"] == "PO104"


def test_several_bad_files_in_one_run(tmp_path: Path) -> None:
    """One broken file never stops the others from being checked."""
    (tmp_path / "a.prompt.yaml").write_bytes(b"\x00\x01")
    (tmp_path / "b.prompt.yaml").write_text("id: [unclosed\n")
    (tmp_path / "c.prompt.yaml").write_bytes(GOOD.replace(b"id: fine", b"id: fine\nmodle: 1"))
    (tmp_path / "d.prompt.yaml").write_bytes(GOOD.replace(b"id: fine", b"id: other"))
    result, findings = _lint_json(tmp_path)
    assert result.returncode == 1
    assert [(f["path"], f["code"]) for f in findings] == [
        ("a.prompt.yaml", "PO100"), ("b.prompt.yaml", "PO101"), ("c.prompt.yaml", "PO110"),
    ]
    assert result.json()["files_checked"] == 4


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(["lint", "nowhere.prompt.yaml"], cwd=tmp_path)
    assert result.returncode == 2
    assert "nowhere.prompt.yaml" in result.stderr
    assert_no_traceback(result)


SECRETS = {
    "openai": "sk-proj-Zq8xW3vT6yU1iO4pA7sD9fG2hJ5kL0",
    "aws": "AKIAQ3EGRT7MZXJ4WP2N",
    "github": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "slack": "xoxb-1234567890-abcdefghijkl",
    "assignment": "Tr0ub4dorAndThreeMoreWords",
}


def test_secrets_never_appear_in_any_output(tmp_path: Path) -> None:
    text = (
        "# token for local testing: " + SECRETS["github"] + "\n"
        "id: secret.prompt\n"
        "model: {name: openai/gpt-4o-mini}\n"
        "description: 'aws " + SECRETS["aws"] + " and slack " + SECRETS["slack"] + "'\n"
        "messages:\n"
        "  - role: system\n"
        "    content: |\n"
        "      Use key " + SECRETS["openai"] + " when calling the tool.\n"
        "      password = " + SECRETS["assignment"] + "\n"
    )
    (tmp_path / "secret.prompt.yaml").write_text(text)
    outputs = []
    for fmt in ("text", "json", "github", "sarif"):
        result = run_cli(["lint", "--format", fmt, "secret.prompt.yaml"], cwd=tmp_path)
        assert result.returncode == 1
        assert_no_traceback(result)
        outputs.append(result.stdout + result.stderr)
    written = run_cli(["lint", "--format", "sarif", "--output", "report.sarif", "secret.prompt.yaml"], cwd=tmp_path)
    assert written.returncode == 1
    outputs.append((tmp_path / "report.sarif").read_text(encoding="utf-8") + written.stdout + written.stderr)
    for output in outputs:
        for kind, secret in SECRETS.items():
            assert secret not in output, f"{kind} secret leaked"
            assert secret[-8:] not in output, f"the tail of the {kind} secret leaked"
    text_output = outputs[0]
    lines = {line.split(": ", 1)[0] for line in text_output.splitlines() if " PO601 " in line}
    assert lines == {"secret.prompt.yaml:1:28", "secret.prompt.yaml:4:19", "secret.prompt.yaml:4:50",
                     "secret.prompt.yaml:8:15", "secret.prompt.yaml:9:18"}, text_output


TEMPLATE_HEAD = (
    "id: deep.template\nmodel: {name: openai/gpt-4o-mini}\ninputs:\n  type: object\n  required: [x]\n"
    "  properties:\n    x: {type: string}\nmessages:\n  - role: user\n    content: '"
)


@pytest.mark.parametrize("template", [
    pytest.param("{{ " + "(" * 50_000 + "x" + ")" * 50_000 + " }}", id="parentheses"),
    pytest.param("{{ " + "not " * 50_000 + "x }}", id="not-chain"),
    pytest.param("{% if x %}" * 5_000 + "{% endif %}" * 5_000, id="nested-if"),
    pytest.param("{% for a in x %}" * 3_000 + "{% endfor %}" * 3_000, id="nested-for"),
])
def test_deeply_nested_template_is_a_syntax_finding(tmp_path: Path, template: str) -> None:
    (tmp_path / "t.prompt.yaml").write_text(TEMPLATE_HEAD + template + "'\n")
    _, findings = _lint_json(tmp_path, "t.prompt.yaml")
    finding = _only(findings)
    assert (finding["code"], finding["line"]) == ("PO201", 10)


@pytest.mark.xfail(strict=True, reason=(
    "BUG: a long chain of binary operators or calls parses, then fails to compile: Python's "
    "compile() raises SyntaxError 'too many nested parentheses' (from ~200 '+') or RecursionError "
    "(from ~400, also in the _Bounder NodeTransformer); BoundedSandbox.render compiles outside its "
    "try block and PO206 catches only TemplateError, so `promptops lint` dies with a traceback"))
@pytest.mark.parametrize("template", [
    pytest.param("{{ x" + " + x" * 250 + " }}", id="250-additions"),
    pytest.param("{{ x" + "+x" * 5_000 + " }}", id="5000-additions"),
    pytest.param("{{ x" + "()" * 5_000 + " }}", id="5000-calls"),
    pytest.param("{% set y = 1 %}{{ x" + "+x" * 5_000 + " }}", id="additions-after-set"),
])
def test_template_too_deep_to_compile_is_a_finding(tmp_path: Path, template: str) -> None:
    (tmp_path / "t.prompt.yaml").write_text(TEMPLATE_HEAD + template + "'\n")
    result = run_cli(["lint", "--format", "json", "t.prompt.yaml"], cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 1
    finding = _only(result.json()["findings"])
    assert finding["code"] in ("PO201", "PO206") and finding["line"] == 10, finding


def _suite_with_dataset(folder: Path, name: str, content: bytes) -> None:
    source = Path(__file__).parent / "fixtures" / "bad" / "case_missing_input"
    (folder / "promptops.yaml").write_bytes((source / "promptops.yaml").read_bytes())
    (folder / "answer.prompt.yaml").write_bytes((source / "answer.prompt.yaml").read_bytes())
    (folder / "answer.eval.yaml").write_text(f"prompt: support.answer\ndataset: {name}\n")
    (folder / name).write_bytes(content)


GOOD_ROW = b'{"id": "ok", "vars": {"question": "q", "passages": []}}\n'


@pytest.mark.parametrize("name, content, line", [
    pytest.param("cases.jsonl", GOOD_ROW + b'{"id": "x", "vars": {"question": "q", "passages": [}}\n', 2, id="jsonl"),
    pytest.param("cases.jsonl", GOOD_ROW + b"\xff\xfe\n", 2, id="jsonl-not-utf8"),
    pytest.param("cases.yaml", b"- id: a\n  vars: {question: q, passages: []}\n- id: b\n  vars: [\n", 5, id="yaml"),
    pytest.param("cases.csv", b"id,question,passages\na,q,[]\nb,q,[],extra\n", 3, id="csv"),
])
def test_broken_dataset_rows(tmp_path: Path, name: str, content: bytes, line: int) -> None:
    _suite_with_dataset(tmp_path, name, content)
    _, findings = _lint_json(tmp_path)
    # The suite may add PO506 (no usable case); the row's own finding names the dataset and line.
    codes = [(f["path"], f["code"], f["line"]) for f in findings if f["code"] != "PO506"]
    assert codes and all(path == name for path, _, _ in codes), codes
    assert codes[0][1] in ("PO100", "PO505") and codes[0][2] == line, codes


@pytest.mark.xfail(strict=True, reason=(
    "BUG: a dataset row that Python's json/csv readers reject with something other than "
    "JSONDecodeError escapes loader._jsonl_rows/_csv_rows: RecursionError for a deeply nested "
    "JSON line, ValueError for an integer over 4,300 digits, _csv.Error for a CSV field over "
    "131,072 characters; `promptops lint` dies with a traceback (exit 1)"))
@pytest.mark.parametrize("name, content, line", [
    pytest.param("cases.jsonl", GOOD_ROW + b"[" * 100_000 + b"]" * 100_000 + b"\n", 2, id="jsonl-deep"),
    pytest.param("cases.jsonl", b'{"id": ' + b"9" * 5_000 + b', "vars": {}}\n', 1, id="jsonl-huge-int"),
    pytest.param("cases.csv", b"id,question\na," + b"x" * 200_000 + b"\n", 2, id="csv-huge-field"),
])
def test_dataset_rows_that_break_the_reader(tmp_path: Path, name: str, content: bytes, line: int) -> None:
    _suite_with_dataset(tmp_path, name, content)
    result = run_cli(["lint", "--format", "json"], cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 1
    findings = result.json()["findings"]
    assert [(f["path"], f["code"], f["line"]) for f in findings][:1] == [(name, "PO505", line)]
