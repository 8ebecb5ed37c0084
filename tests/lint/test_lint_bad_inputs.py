"""Broken inputs that cannot carry an ``# expect:`` comment, generated here: binary, non-UTF-8,
over 1 MB, symlinks and FIFOs leaving the repository, 100,000-level nesting, templates too deep
to compile, dataset rows that break the readers, secrets. Each goes through the real CLI:
exit 1 or 2 with one clear finding, no traceback, no hang.

Every case is registered with ``@case(name)``: a function that fills the case's folder and
returns the CLI arguments. All cases start together when the module's first test runs
(CliPool), and each test checks its own result.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.cli import CliResult
from helpers.lint import BAD, CliPool, assert_no_traceback

CASES: dict[str, Callable[[Path], list[str]]] = {}
JSON = ["lint", "--format", "json"]
GOOD = b"id: fine\nmodel: {name: openai/gpt-4o-mini}\nmessages:\n  - role: user\n    content: hi\n"


def case(name: str) -> Callable[[Callable[[Path], list[str]]], Callable[[Path], list[str]]]:
    def register(prepare: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
        assert name not in CASES, name
        CASES[name] = prepare
        return prepare
    return register


def write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory):
    pool = CliPool(tmp_path_factory.mktemp("generated"))
    for name, prepare in CASES.items():
        pool.start(name, prepare)
    yield pool.result
    pool.close()


def findings_of(cli: Callable[[str], tuple[Path, CliResult]], name: str,
                exit_codes: tuple[int, ...] = (1,)) -> tuple[Path, CliResult, list[dict]]:
    folder, result = cli(name)
    assert_no_traceback(result)
    assert result.returncode in exit_codes, (result.returncode, result.stdout, result.stderr[-2000:])
    return folder, result, result.json()["findings"]


def only(findings: list[dict]) -> dict:
    assert len(findings) == 1, findings
    return findings[0]


# -- unreadable files ---------------------------------------------------------------------------

@case("non-utf8")
def _(folder: Path) -> list[str]:
    write(folder / "latin1.prompt.yaml",
          b"id: latin1\nmodel: {name: openai/gpt-4o-mini}\nmessages: [{role: user, content: caf\xe9}]\n")
    return JSON + ["latin1.prompt.yaml"]


def test_non_utf8_file(cli) -> None:
    _, _, findings = findings_of(cli, "non-utf8")
    finding = only(findings)
    assert (finding["path"], finding["code"], finding["line"]) == ("latin1.prompt.yaml", "PO100", 3)
    assert "UTF-8" in finding["message"]


@case("utf8-bom")
def _(folder: Path) -> list[str]:
    write(folder / "bom.prompt.yaml", b"\xef\xbb\xbf" + GOOD)
    return JSON + ["bom.prompt.yaml"]


def test_utf8_bom_is_accepted(cli) -> None:
    _, _, findings = findings_of(cli, "utf8-bom", exit_codes=(0,))
    assert findings == []


BINARY = {
    "random-bytes": bytes(range(256)) * 4,
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64,
    "utf-16": GOOD.decode().encode("utf-16"),
}
for _name, _content in BINARY.items():
    case(f"binary-{_name}")(lambda folder, c=_content: [*JSON, write(folder / "blob.prompt.yaml", c).name])


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_file(cli, name: str) -> None:
    _, _, findings = findings_of(cli, f"binary-{name}")
    finding = only(findings)
    assert (finding["path"], finding["code"], finding["line"]) == ("blob.prompt.yaml", "PO100", 1)
    assert "binary" in finding["message"]


@case("over-1mb")
def _(folder: Path) -> list[str]:
    # Valid YAML with a secret and an unknown key: if the file were read, other codes would show.
    filler = b"# " + b"x" * 1_000_000 + b"\n"
    write(folder / "huge.prompt.yaml", GOOD + b"api_key: sk-proj-" + b"A" * 40 + b"\n" + filler)
    return JSON + ["huge.prompt.yaml"]


def test_file_over_one_megabyte_is_not_read(cli) -> None:
    _, result, findings = findings_of(cli, "over-1mb")
    finding = only(findings)
    assert (finding["path"], finding["code"], finding["line"]) == ("huge.prompt.yaml", "PO100", 1)
    assert "1,000,000" in finding["message"]
    assert "sk-proj" not in result.stdout


@case("exactly-1mb")
def _(folder: Path) -> list[str]:
    path = write(folder / "big.prompt.yaml", GOOD + b"#" + b"x" * (1_000_000 - len(GOOD) - 2) + b"\n")
    assert path.stat().st_size == 1_000_000
    return JSON + ["big.prompt.yaml"]


def test_file_of_exactly_the_limit_is_read(cli) -> None:
    _, _, findings = findings_of(cli, "exactly-1mb", exit_codes=(0,))
    assert findings == []


@case("zero-bytes")
def _(folder: Path) -> list[str]:
    write(folder / "zero.prompt.yaml", b"")
    return JSON + ["zero.prompt.yaml"]


def test_zero_byte_file(cli) -> None:
    _, _, findings = findings_of(cli, "zero-bytes")
    assert (only(findings)["code"], only(findings)["line"]) == ("PO105", 1)


# -- symlinks and FIFOs -------------------------------------------------------------------------

def project_with_outside(folder: Path) -> Path:
    """``folder`` becomes a project; a sibling folder outside it holds a file that would give
    findings, and leak a secret, if it were ever read."""
    outside = folder.parent / f"{folder.name}-outside"
    write(folder / "promptops.yaml", "defaults: {model: openai/gpt-4o-mini}\n")
    write(folder / "fine.prompt.yaml", GOOD)
    write(outside / "target.prompt.yaml",
          "id: Outside Secret\nmodel: {name: x}\n"
          "messages: [{role: user, content: 'sk-proj-OUTSIDEOUTSIDEOUTSIDE1234'}]\n")
    return outside


for _named in (False, True):
    @case(f"symlink-{'named' if _named else 'discovered'}")
    def _(folder: Path, named: bool = _named) -> list[str]:
        outside = project_with_outside(folder)
        (folder / "evil.prompt.yaml").symlink_to(outside / "target.prompt.yaml")
        return JSON + (["evil.prompt.yaml"] if named else [])


@pytest.mark.parametrize("how", ["discovered", "named"])
def test_symlink_leaving_the_repository_is_never_read(cli, how: str) -> None:
    _, result, findings = findings_of(cli, f"symlink-{how}")
    finding = only(findings)
    assert (finding["path"], finding["code"], finding["line"]) == ("evil.prompt.yaml", "PO100", 1)
    assert "symlink" in finding["message"]
    assert "OUTSIDE" not in result.stdout + result.stderr


@case("symlink-fifo")
def _(folder: Path) -> list[str]:
    outside = project_with_outside(folder)
    if hasattr(os, "mkfifo"):
        os.mkfifo(outside / "pipe")
        (folder / "pipe.prompt.yaml").symlink_to(outside / "pipe")
    return JSON


def test_symlink_to_a_fifo_outside_is_never_opened(cli) -> None:
    """Opening a FIFO that has no writer blocks for ever: a read would hang until the timeout."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    _, _, findings = findings_of(cli, "symlink-fifo")
    assert [(f["path"], f["code"]) for f in findings] == [("pipe.prompt.yaml", "PO100")]


@case("symlinked-folder")
def _(folder: Path) -> list[str]:
    (folder / "linked").symlink_to(project_with_outside(folder), target_is_directory=True)
    return JSON


def test_symlinked_folder_leaving_the_repository_is_not_searched(cli) -> None:
    _, result, findings = findings_of(cli, "symlinked-folder", exit_codes=(0,))
    assert findings == []
    assert "OUTSIDE" not in result.stdout


@case("through-symlinked-folder")
def _(folder: Path) -> list[str]:
    (folder / "linked").symlink_to(project_with_outside(folder), target_is_directory=True)
    return JSON + ["linked/target.prompt.yaml"]


def test_file_named_through_a_symlinked_folder_is_not_read(cli) -> None:
    _, result, findings = findings_of(cli, "through-symlinked-folder")
    assert "OUTSIDE" not in result.stdout
    assert [(f["path"], f["code"]) for f in findings] == [("linked/target.prompt.yaml", "PO100")]


@case("symlink-inside")
def _(folder: Path) -> list[str]:
    project_with_outside(folder)
    (folder / "alias.prompt.yaml").symlink_to(folder / "fine.prompt.yaml")
    return JSON + ["alias.prompt.yaml"]


def test_symlink_inside_the_repository_is_followed(cli) -> None:
    _, _, findings = findings_of(cli, "symlink-inside", exit_codes=(0,))
    assert findings == []


# -- nesting ------------------------------------------------------------------------------------

DEPTH = 100_000
DEEP = {
    "flow-sequences": ("[" * DEPTH + "]" * DEPTH + "\n", 1),
    "flow-mappings": ("{a: " * DEPTH + "1" + "}" * DEPTH + "\n", 1),
    "flow-unclosed": ("id: x\nmessages: " + "[" * DEPTH + "\n", 2),
    "flow-mixed": ("key: " + "[{a: " * (DEPTH // 2) + "\n", 1),
    "block-sequences": ("- " * DEPTH + "x\n", 1),
    "block-sequences-under-key": ("messages:\n" + "- " * DEPTH + "x\n", 2),
    # A mapping as a key is refused before the depth is reached: PO101 (see the test).
    "block-explicit-keys": ("? " * DEPTH + "x\n", 1),
    # As deep as indentation gets under the 1 MB limit: one more space on every line.
    "block-mappings-indented": ("".join(" " * i + "a:\n" for i in range(1_300)) + " " * 1_300 + "b: 1\n", 65),
    "block-sequences-indented": ("".join(" " * i + "-\n" for i in range(1_300)) + " " * 1_300 + "x\n", 65),
}
for _name, (_text, _line) in DEEP.items():
    case(f"deep-{_name}")(lambda folder, t=_text: [*JSON, write(folder / "deep.prompt.yaml", t).name])


@pytest.mark.parametrize("name", list(DEEP))
def test_deep_nesting_does_not_crash(cli, name: str) -> None:
    _, result, findings = findings_of(cli, f"deep-{name}")  # a crash would be -SIGSEGV, not 1
    assert result.returncode != -signal.SIGSEGV
    finding = only(findings)
    code = "PO101" if name == "block-explicit-keys" else "PO104"
    assert (finding["code"], finding["line"]) == (code, DEEP[name][1]), finding


TEMPLATE_HEAD = (
    "id: deep.template\nmodel: {name: openai/gpt-4o-mini}\ninputs:\n  type: object\n  required: [x]\n"
    "  properties:\n    x: {type: string}\nmessages:\n  - role: user\n    content: '"
)
DEEP_TEMPLATES = {
    "parentheses": "{{ " + "(" * 50_000 + "x" + ")" * 50_000 + " }}",
    "not-chain": "{{ " + "not " * 50_000 + "x }}",
    "nested-if": "{% if x %}" * 5_000 + "{% endif %}" * 5_000,
    "nested-for": "{% for a in x %}" * 3_000 + "{% endfor %}" * 3_000,
}
UNCOMPILABLE_TEMPLATES = {
    "250-additions": "{{ x" + " + x" * 250 + " }}",
    "5000-additions": "{{ x" + "+x" * 5_000 + " }}",
    "5000-calls": "{{ x" + "()" * 5_000 + " }}",
    "additions-after-set": "{% set y = 1 %}{{ x" + "+x" * 5_000 + " }}",
}
for _name, _template in {**DEEP_TEMPLATES, **UNCOMPILABLE_TEMPLATES}.items():
    case(f"template-{_name}")(
        lambda folder, t=_template: [*JSON, write(folder / "t.prompt.yaml", TEMPLATE_HEAD + t + "'\n").name]
    )


@pytest.mark.parametrize("name", list(DEEP_TEMPLATES))
def test_deeply_nested_template_is_a_syntax_finding(cli, name: str) -> None:
    _, _, findings = findings_of(cli, f"template-{name}")
    finding = only(findings)
    assert (finding["code"], finding["line"]) == ("PO201", 10)


@pytest.mark.parametrize("name", list(UNCOMPILABLE_TEMPLATES))
def test_template_too_deep_to_compile_is_a_finding(cli, name: str) -> None:
    _, _, findings = findings_of(cli, f"template-{name}")
    finding = only(findings)
    assert finding["code"] in ("PO201", "PO206") and finding["line"] == 10, finding


BRACKETS_IN_TEXT = {
    "comment": "  - role: user\n    content: hi  # " + "[" * 70 + "\n",
    "block-scalar": "  - role: user\n    content: |\n      Draw this: " + "[" * 70 + "\n",
    "quoted": "  - role: user\n    content: \"" + "[" * 70 + "\"\n",
    "dashes": "  - role: user\n    content: |\n      Separator: " + "- " * 70 + "\n",
}
for _name, _content in BRACKETS_IN_TEXT.items():
    case(f"brackets-{_name}")(lambda folder, c=_content: [
        *JSON, write(folder / "ok.prompt.yaml", "id: ok\nmodel: {name: openai/gpt-4o-mini}\nmessages:\n" + c).name
    ])


@pytest.mark.parametrize("name", list(BRACKETS_IN_TEXT))
def test_brackets_inside_text_are_not_nesting(cli, name: str) -> None:
    _, _, findings = findings_of(cli, f"brackets-{name}", exit_codes=(0,))
    assert findings == []


# -- datasets -----------------------------------------------------------------------------------

def suite_with_dataset(folder: Path, name: str, content: bytes) -> list[str]:
    source = BAD / "case_missing_input"
    write(folder / "promptops.yaml", (source / "promptops.yaml").read_bytes())
    write(folder / "answer.prompt.yaml", (source / "answer.prompt.yaml").read_bytes())
    write(folder / "answer.eval.yaml", f"prompt: support.answer\ndataset: {name}\n")
    write(folder / name, content)
    return JSON


GOOD_ROW = b'{"id": "ok", "vars": {"question": "q", "passages": []}}\n'
BROKEN_ROWS = {
    "jsonl": ("cases.jsonl", GOOD_ROW + b'{"id": "x", "vars": {"question": "q", "passages": [}}\n', 2),
    "jsonl-not-utf8": ("cases.jsonl", GOOD_ROW + b"\xff\xfe\n", 2),
    "yaml": ("cases.yaml", b"- id: a\n  vars: {question: q, passages: []}\n- id: b\n  vars: [\n", 4),
    "csv": ("cases.csv", b"id,question,passages\na,q,[]\nb,q,[],extra\n", 3),
}
ROWS_THAT_BREAK_THE_READER = {
    "jsonl-deep": ("cases.jsonl", GOOD_ROW + b"[" * 100_000 + b"]" * 100_000 + b"\n", 2),
    "jsonl-huge-int": ("cases.jsonl", b'{"id": ' + b"9" * 5_000 + b', "vars": {}}\n', 1),
    "csv-huge-field": ("cases.csv", b"id,question\na," + b"x" * 200_000 + b"\n", 2),
}
for _name, (_file, _content, _) in {**BROKEN_ROWS, **ROWS_THAT_BREAK_THE_READER}.items():
    case(f"dataset-{_name}")(lambda folder, f=_file, c=_content: suite_with_dataset(folder, f, c))


@pytest.mark.parametrize("name", list(BROKEN_ROWS))
def test_broken_dataset_rows(cli, name: str) -> None:
    file, _, line = BROKEN_ROWS[name]
    _, _, findings = findings_of(cli, f"dataset-{name}")
    # The suite may add PO506 (no usable case); the row's own finding names the dataset and line.
    codes = [(f["path"], f["code"], f["line"]) for f in findings if f["code"] != "PO506"]
    assert codes and all(path == file for path, _, _ in codes), codes
    assert codes[0][1] in ("PO100", "PO505") and codes[0][2] == line, codes


@pytest.mark.parametrize("name", list(ROWS_THAT_BREAK_THE_READER))
def test_dataset_rows_that_break_the_reader(cli, name: str) -> None:
    file, _, line = ROWS_THAT_BREAK_THE_READER[name]
    _, _, findings = findings_of(cli, f"dataset-{name}")
    rows = [(f["path"], f["code"], f["line"]) for f in findings if f["code"] != "PO506"]  # PO506: no usable case
    assert rows[:1] == [(file, "PO505", line)]


# -- several files, missing paths -------------------------------------------------------------

@case("several-bad-files")
def _(folder: Path) -> list[str]:
    write(folder / "a.prompt.yaml", b"\x00\x01")
    write(folder / "b.prompt.yaml", "id: [unclosed\n")
    write(folder / "c.prompt.yaml", GOOD.replace(b"id: fine", b"id: fine\nmodle: 1"))
    write(folder / "d.prompt.yaml", GOOD.replace(b"id: fine", b"id: other"))
    return JSON


def test_several_bad_files_in_one_run(cli) -> None:
    """One broken file never stops the others from being checked."""
    _, result, findings = findings_of(cli, "several-bad-files")
    assert [(f["path"], f["code"]) for f in findings] == [
        ("a.prompt.yaml", "PO100"), ("b.prompt.yaml", "PO101"), ("c.prompt.yaml", "PO110"),
    ]
    assert result.json()["files_checked"] == 4


@case("missing-path")
def _(folder: Path) -> list[str]:
    return ["lint", "nowhere.prompt.yaml"]


def test_missing_path_is_a_usage_error(cli) -> None:
    _, result = cli("missing-path")
    assert result.returncode == 2
    assert "nowhere.prompt.yaml" in result.stderr
    assert_no_traceback(result)


# -- secrets ------------------------------------------------------------------------------------

SECRETS = {
    "openai": "sk-proj-Zq8xW3vT6yU1iO4pA7sD9fG2hJ5kL0",
    "aws": "AKIAQ3EGRT7MZXJ4WP2N",
    "github": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "slack": "xoxb-1234567890-abcdefghijkl",
    "assignment": "Tr0ub4dorAndThreeMoreWords",
}
SECRET_PROMPT = (
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
SECRET_RUNS = {
    fmt: ["lint", "--format", fmt, "secret.prompt.yaml"] for fmt in ("text", "json", "github", "sarif")
}
SECRET_RUNS["sarif-file"] = ["lint", "--format", "sarif", "--output", "report.sarif", "secret.prompt.yaml"]


def secret_project(args: list[str]) -> Callable[[Path], list[str]]:
    def prepare(folder: Path) -> list[str]:
        write(folder / "secret.prompt.yaml", SECRET_PROMPT)
        return args
    return prepare


for _name, _args in SECRET_RUNS.items():
    case(f"secrets-{_name}")(secret_project(_args))


@pytest.mark.parametrize("name", list(SECRET_RUNS))
def test_secrets_never_appear_in_any_output(cli, name: str) -> None:
    folder, result = cli(f"secrets-{name}")
    assert result.returncode == 1
    assert_no_traceback(result)
    output = result.stdout + result.stderr
    if name == "sarif-file":
        assert result.stdout == ""
        output += (folder / "report.sarif").read_text(encoding="utf-8")
    assert output.count("PO601") >= 5
    for kind, secret in SECRETS.items():
        assert secret not in output, f"the {kind} secret leaked"
        assert secret[-8:] not in output, f"the tail of the {kind} secret leaked"


def test_every_secret_is_found_where_it_is(cli) -> None:
    _, result = cli("secrets-text")
    places = {line.split(": ", 1)[0] for line in result.stdout.splitlines() if " PO601 " in line}
    assert places == {"secret.prompt.yaml:1:28", "secret.prompt.yaml:4:19", "secret.prompt.yaml:4:50",
                      "secret.prompt.yaml:8:15", "secret.prompt.yaml:9:18"}, result.stdout


@pytest.mark.parametrize("command", ["lint", "cost", "diff"])
def test_an_output_path_that_cannot_be_written_is_a_usage_error(tmp_path: Path, command: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from helpers.repo import git
    from promptops.cli import cli

    (tmp_path / "promptops.yaml").write_text("eval: {concurrency: 1}\n")
    (tmp_path / "a.prompt.yaml").write_text(
        "id: a\nmodel: {name: openai/gpt-4o-mini}\nmessages: [{role: user, content: hi}]\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "one")
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "missing-folder" / "report.txt"
    result = CliRunner().invoke(cli, [command, "--output", str(target)])
    assert result.exit_code == 2, result.output
    assert f"cannot write {target}: No such file or directory" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
