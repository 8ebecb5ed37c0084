"""Every deliberately broken fixture yields its codes at the right lines, through the real
CLI, with exit 1 (findings) or 2 (unusable input), no traceback and no hang.

Fixtures live in tests/fixtures/bad/: a single file, or a project folder with a
promptops.yaml where a rule needs other files. Each declares what it expects in
its first line, e.g. ``# expect: PO101 line 4`` or
``# expect: PO505 data/cases.jsonl line 2 "invalid JSON"; exit 2``; with several
findings, all of them and nothing else. Inputs that cannot hold a comment
(binary, non-UTF-8, huge, symlinks, 100,000-level nesting) are generated in
test_lint_bad_inputs.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.cli import CliResult
from helpers.lint import CLI_TIMEOUT_S, Case, CliPool, assert_no_traceback, discover_cases, parse_expectations
from promptops.yamlparse import YamlError, parse

CASES = discover_cases()

# Fixtures whose findings differ from the expectation because of a known bug in
# promptops (fixture name -> "BUG: ..."); their exit-code / no-traceback checks still run.
KNOWN_FINDING_BUGS: dict[str, str] = {}


@pytest.fixture(scope="module")
def cli_results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """`promptops lint --strict --format json` on each selected fixture, in this process (small YAML files:
    nothing to isolate; test_lint_bad_inputs.py keeps a process for each of its generated inputs)."""
    wanted = {
        item.callspec.params["case"].name
        for item in request.session.items
        if hasattr(item, "callspec") and isinstance(item.callspec.params.get("case"), Case)
    }
    pool = CliPool(tmp_path_factory.mktemp("bad"), in_process=True)

    def prepare(case: Case):
        def copy(folder: Path) -> list[str]:
            folder.rmdir()
            _, paths = case.copy_to(folder.parent)
            return ["lint", "--strict", "--format", "json", *paths]
        return copy

    for case in CASES:
        if case.name in wanted:
            pool.start(case.name, prepare(case))
    yield pool
    pool.close()


def _result(cli_results: CliPool, case: Case) -> tuple[Path, CliResult]:
    return cli_results.result(case.name)


def _param(case: Case, bugs: dict[str, str]) -> object:
    marks = [pytest.mark.xfail(reason=bugs[case.name], strict=True)] if case.name in bugs else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(c, KNOWN_FINDING_BUGS) for c in CASES])
def test_fixture_yields_its_codes_at_the_right_lines(case: Case, cli_results: CliPool) -> None:
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
def test_fixture_exit_code_no_traceback_no_hang(case: Case, cli_results: CliPool) -> None:
    _, result = _result(cli_results, case)
    assert result.returncode == case.exit_code, (result.returncode, result.stdout, result.stderr)
    assert_no_traceback(result)
    assert result.seconds < CLI_TIMEOUT_S / 2, f"took {result.seconds:.1f} s"
    if case.exit_code == 1:
        assert result.stderr == ""


def test_every_rule_has_a_broken_fixture() -> None:
    from promptops.lint.registry import all_rules

    covered = {e.code for case in CASES for e in case.expected}
    lint_rules = [rule.code for rule in all_rules().values() if rule.scope != "cost"]
    missing = sorted(code for code in lint_rules if code not in covered and code != "PO100")
    # PO100 (unreadable files) is covered by the generated inputs of test_lint_bad_inputs.py;
    # budget findings (scope "cost") come from `promptops cost` and are tested with it.
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


def test_python_tag_is_never_executed(cli_results: CliPool, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    """The fixture's tag would run `touch PWNED-python-tag` in the current directory."""
    source = next(case for case in CASES if case.name == "python_tag").source
    assert "touch PWNED-python-tag" in source.read_text(encoding="utf-8")
    folder, result = _result(cli_results, next(case for case in CASES if case.name == "python_tag"))
    assert "PO103" in result.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["python_tag.prompt.yaml"]
    monkeypatch.chdir(tmp_path)  # and in-process, straight through the parser
    with pytest.raises(YamlError) as raised:
        parse(source.read_text(encoding="utf-8"))
    assert raised.value.code == "PO103"
    assert list(tmp_path.iterdir()) == []
