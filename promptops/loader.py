"""Load files into typed specs: read safely, parse, validate against the schema, build.

Every problem becomes a Finding that names the file, line and column; nothing a
file contains can raise out of here.
"""

from __future__ import annotations

import csv
import difflib
import io
import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptops import resources
from promptops.codes import (
    DATASET_INVALID,
    DATASET_MISSING,
    INVALID_VALUE,
    MISSING_KEY,
    NOT_A_MAPPING,
    UNKNOWN_ASSERTION_TYPE,
    UNKNOWN_KEY,
    UNREADABLE_FILE,
    WRONG_TYPE,
)
from promptops.findings import Finding, Severity, dotted
from promptops.schemacache import fast_validator
from promptops.specs import (
    Assertion,
    EvalCase,
    EvalSuiteSpec,
    Gates,
    Message,
    ProjectConfig,
    PromptSpec,
    RetrievalSpec,
    Source,
    kind_of,
)
from promptops.yamlparse import MAX_DEPTH, JsonPath, Positions, YamlError, parse

MAX_FILE_BYTES = 1_000_000
MAX_DATASET_BYTES = 50_000_000
MAX_DATASET_ROWS = 100_000  # cases a dataset may hold: each becomes a model call per side
MAX_CSV_COLUMNS = 1_000
# jsonschema explains errors slowly (a 400 KB list of 199,000 wrong items takes seconds):
# past this many in one file, the rest are not looked for.
MAX_SCHEMA_ERRORS = 1_000

Spec = PromptSpec | RetrievalSpec | EvalSuiteSpec | ProjectConfig


@dataclass
class Loaded:
    """The outcome of loading one file: a spec when it is usable, and its findings."""

    source: Source
    kind: str
    spec: Spec | None = None
    data: Any = None
    findings: list[Finding] = field(default_factory=list)
    incomplete: bool = False  # the file has more schema errors than its findings list


def display_path(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _finding(source: Source, code: str, message: str, line: int = 1, col: int = 1) -> Finding:
    return Finding(source.display, line, col, code, message, Severity.ERROR)


def read_text(path: Path, root: Path, display: str, limit: int = MAX_FILE_BYTES) -> tuple[str | None, Finding | None]:
    """The file's text, or the one finding that says why it cannot be read."""

    def problem(message: str) -> tuple[None, Finding]:
        return None, Finding(display, 1, 1, UNREADABLE_FILE, message, Severity.ERROR)

    try:
        if _escapes(path, root):
            return problem("is reached through a symlink that leaves the repository; not read")
        size = path.stat().st_size
        if size > limit:
            return problem(f"is {size:,} bytes; files over {limit:,} bytes are not read")
        raw = path.read_bytes()
    except OSError as exc:
        return problem(f"cannot be read: {exc.strerror or exc}")
    return decode_text(raw, display)


def decode_text(raw: bytes, display: str) -> tuple[str | None, Finding | None]:
    """UTF-8 text from a file's bytes, or the finding that says why it is not text."""
    if b"\x00" in raw:
        return None, Finding(display, 1, 1, UNREADABLE_FILE, "is a binary file, not YAML text", Severity.ERROR)
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return None, Finding(display, line, 1, UNREADABLE_FILE, f"is not valid UTF-8 (byte {exc.start})",
                             Severity.ERROR)


def _escapes(path: Path, root: Path) -> bool:
    """A path inside the root whose real location (through any symlinked part) is outside it."""
    absolute = Path(os.path.abspath(path))
    real = Path(os.path.realpath(path))
    return real != absolute and _inside(absolute, root) and not _inside(real, Path(os.path.realpath(root)))


def _inside(path: Path, root: Path) -> bool:
    return path.is_relative_to(root.resolve())


class SchemaValidator:
    """Validates parsed data against our JSON Schemas and explains errors in our codes.

    Valid files, the common case on every commit, are decided by a compiled
    validator (fastjsonschema); only invalid ones pay for jsonschema, whose
    complete error list becomes the findings.
    """

    def __init__(self) -> None:
        self._fast: dict[str, Any] = {}
        self._full: dict[str, Any] = {}

    def is_valid(self, kind: str, data: Any) -> bool:
        from fastjsonschema import JsonSchemaException

        try:
            self._validate(kind, data)
            return True
        except JsonSchemaException:
            return False

    def _validate(self, kind: str, data: Any) -> None:
        if kind not in self._fast:
            self._fast[kind] = fast_validator(kind)
        self._fast[kind](data)

    def findings(self, kind: str, data: Any, source: Source) -> list[Finding]:
        return self.explain(kind, data, source)[0]

    def explain(self, kind: str, data: Any, source: Source) -> tuple[list[Finding], bool]:
        """Findings for what breaks the schema, and whether there is more than MAX_SCHEMA_ERRORS of it."""
        from fastjsonschema import JsonSchemaException

        try:
            self._validate(kind, data)
            return [], False
        except JsonSchemaException as fast_error:
            try:
                findings, more = self._explain_all(kind, data, source)
            except ValueError:  # an integer too long to print, in jsonschema's message or ours
                findings, more = [], False
            # The two validators agree on our keyword set; should they not, the fast one's word stands.
            return findings or [_finding(source, INVALID_VALUE, _short(str(fast_error)))], more

    def _explain_all(self, kind: str, data: Any, source: Source) -> tuple[list[Finding], bool]:
        if kind not in self._full:
            from jsonschema import Draft202012Validator

            self._full[kind] = Draft202012Validator(resources.schema(kind))
        errors = list(itertools.islice(self._full[kind].iter_errors(data), MAX_SCHEMA_ERRORS + 1))
        more = len(errors) > MAX_SCHEMA_ERRORS
        return sorted({self._explain(error, source) for error in errors[:MAX_SCHEMA_ERRORS]}), more

    def _explain(self, error: Any, source: Source) -> Finding:
        path: JsonPath = tuple(error.absolute_path)
        where = dotted(path)
        keyword = error.validator
        if keyword == "additionalProperties":
            return self._unknown_keys(error, path, source)
        if keyword == "required":
            missing = error.message.split("'")[1] if "'" in error.message else error.message
            line, col = source.where(path)
            return _finding(source, MISSING_KEY, f"{where}: missing required key '{missing}'", line, col)
        line, col = source.where(path)
        if keyword == "type":
            expected = error.validator_value
            expected = " or ".join(expected) if isinstance(expected, list) else expected
            return _finding(source, WRONG_TYPE, f"{where}: expected {expected}, got {_describe(error.instance)}",
                            line, col)
        if keyword == "enum" and path[-1:] == ("type",) and any(p in ("assert", "default_assert") for p in path):
            hint = _did_you_mean(str(error.instance), error.validator_value)
            return _finding(source, UNKNOWN_ASSERTION_TYPE, f"{where}: unknown assertion type {error.instance!r}{hint}",
                            line, col)
        if keyword == "enum":
            hint = _did_you_mean(str(error.instance), error.validator_value)
            allowed = ", ".join(map(str, error.validator_value))
            return _finding(source, INVALID_VALUE, f"{where}: {error.instance!r} is not one of {allowed}{hint}",
                            line, col)
        if keyword == "anyOf" and not path and kind_of(source.path) == "eval":
            return _finding(source, MISSING_KEY, "an eval suite needs cases, a dataset, or both", line, col)
        if keyword in ("oneOf", "anyOf"):
            return _finding(source, WRONG_TYPE, f"{where}: {_describe(error.instance)} does not fit here", line, col)
        return _finding(source, INVALID_VALUE, f"{where}: {_short(error.message)}", line, col)

    def _unknown_keys(self, error: Any, path: JsonPath, source: Source) -> Finding:
        allowed = sorted((error.schema.get("properties") or {}).keys() - {"$schema"})
        extras = sorted(set(error.instance) - set(allowed) - {"$schema"})
        key = extras[0] if extras else "?"
        line, col = source.where(path + (key,), key=True)
        hint = _did_you_mean(key, allowed)
        others = f" (and {len(extras) - 1} more)" if len(extras) > 1 else ""
        place = f" in {dotted(path)}" if path else ""
        message = f"unknown key '{key}'{place}{hint}{others}; allowed: {', '.join(allowed)}"
        return _finding(source, UNKNOWN_KEY, message, line, col)


def _did_you_mean(word: str, choices: list[Any]) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _describe(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    kind = names.get(type(value)) or ("a number" if isinstance(value, (int, float)) else type(value).__name__)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            return f"{kind} ({_short(repr(value), 40)})"
        except ValueError:  # only an integer of thousands of digits: Python refuses to print it
            return f"{kind} (of {int(value).bit_length():,} bits)"
    return kind


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class WorkTree:
    """Files as they are on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, path: Path, display: str, limit: int = MAX_FILE_BYTES) -> tuple[str | None, Finding | None]:
        return read_text(path, self.root, display, limit)

    def is_file(self, path: Path) -> bool:
        return path.is_file()


class Loader:
    """Loads the files of one project, sharing schema validators between them.

    Files come from the work tree by default, or from any ``files`` object
    with the same two methods (a git commit's tree, for instance).
    """

    def __init__(self, root: Path, display_base: Path | None = None, files: Any = None,
                 memo: dict[tuple[Any, ...], Any] | None = None) -> None:
        self.root = root.resolve()
        self.display_base = (display_base or self.root).resolve()
        self.schemas = SchemaValidator()
        self.files = files or WorkTree(self.root)
        # What loading a file (or a dataset) gave, by its name and content: loaders that share it (a
        # comparison's base and head) parse and validate a file that did not change once.
        self.memo = memo

    def load(self, path: Path) -> Loaded:
        kind = kind_of(path) or "prompt"
        display = display_path(path if path.is_absolute() else Path.cwd() / path, self.display_base)
        text, problem = self.files.read(path, display)
        # An eval suite's result depends on its datasets too: those are remembered on their own.
        key = (kind, path, display, self.root, text) if self.memo is not None and kind != "eval" else None
        if key is not None and key in self.memo:  # type: ignore[operator]
            return self.memo[key]  # type: ignore[index,no-any-return]
        result = self._load(path, kind, display, text, problem)
        if key is not None:
            self.memo[key] = result  # type: ignore[index]
        return result

    def _load(self, path: Path, kind: str, display: str, text: str | None, problem: Finding | None) -> Loaded:
        source = Source(path=path, display=display, text=text or "")
        result = Loaded(source=source, kind=kind)
        if problem:
            result.findings.append(problem)
            return result
        try:
            data, positions = parse(text or "")
        except YamlError as exc:
            result.findings.append(_finding(source, exc.code, exc.message, exc.line, exc.col))
            return result
        source = Source(path=path, display=display, positions=positions, text=text or "")
        result.source = source
        if not isinstance(data, dict):
            what = "empty" if data is None else f"{_describe(data)}, not a mapping of keys"
            result.findings.append(_finding(source, NOT_A_MAPPING, f"the file is {what}; expected a {kind} mapping"))
            return result
        result.data = data
        findings, result.incomplete = self.schemas.explain(kind, data, source)
        result.findings.extend(findings)
        if result.findings:
            return result
        builders: dict[str, Callable[[dict[str, Any], Source, list[Finding]], Spec]] = {
            "prompt": build_prompt, "retrieval": _retrieval, "eval": self._eval, "config": self._config}
        build = builders[kind]
        result.spec = build(data, source, result.findings)
        return result

    def _config(self, data: dict[str, Any], source: Source, findings: list[Finding]) -> ProjectConfig:
        return ProjectConfig(root=source.path.resolve().parent, raw=data, source=source)

    def _eval(self, data: dict[str, Any], source: Source, findings: list[Finding]) -> EvalSuiteSpec:
        cases = [_case(case, source, ("cases", i)) for i, case in enumerate(data.get("cases") or [])]
        dataset_cases: list[EvalCase] | None = []
        if data.get("dataset"):
            dataset_cases = self._dataset_cases(data["dataset"], source, findings)
            cases = (dataset_cases or []) + cases
        return EvalSuiteSpec(
            prompt=data["prompt"],
            cases=tuple(cases),
            default_assert=tuple(map(Assertion.from_dict, data.get("default_assert") or ())),
            gates=Gates.from_dict(data.get("gates") or {}),
            raw=data,
            source=source,
            dataset=data.get("dataset"),
            repeat=data.get("repeat"),
            confirm=data.get("confirm"),
            threshold=float(data.get("threshold", 1.0)),
            dataset_readable=dataset_cases is not None,
            context_judged=tuple(dict.fromkeys((data.get("retrieval") or {}).get("judge") or ())),
            context_judge_model=(data.get("retrieval") or {}).get("model"),
        )

    def _dataset_cases(self, relative: str, suite: Source, findings: list[Finding]) -> list[EvalCase] | None:
        """The dataset's valid cases (bad rows become findings); None when it cannot be read at all."""
        line, col = suite.where(("dataset",))
        path = (suite.path.parent / relative).resolve()
        if Path(relative).is_absolute() or not _inside(path, self.root):
            findings.append(_finding(suite, DATASET_MISSING, f"dataset '{relative}' is outside the repository",
                                     line, col))
            return None
        if not self.files.is_file(path):
            findings.append(_finding(suite, DATASET_MISSING, f"dataset '{relative}' does not exist", line, col))
            return None
        if path.suffix not in _READERS:
            findings.append(_finding(suite, DATASET_MISSING, f"dataset '{relative}' must be .jsonl, .csv or .yaml",
                                     line, col))
            return None
        display = display_path(path, self.display_base)
        text, problem = self.files.read(path, display, MAX_DATASET_BYTES)
        if problem:
            findings.append(problem)
            return None
        key = ("dataset", path, display, text)
        cases: list[EvalCase] | None
        if self.memo is not None and key in self.memo:
            cases, found = self.memo[key]
        else:
            found = []
            cases = self._rows(path, display, text or "", found)
            if self.memo is not None:
                self.memo[key] = (cases, found)
        findings.extend(found)
        return cases

    def _rows(self, path: Path, display: str, text: str, findings: list[Finding]) -> list[EvalCase]:
        """The dataset's valid cases; its bad rows become findings."""
        reader = _READERS[path.suffix]
        cases = []
        origin = Source(path=path, display=display, text=text or "")  # shared by the dataset's cases
        explained = 0  # rows explained in full; past MAX_SCHEMA_ERRORS a bad row gets a short finding
        for count, (row_line, row, error) in enumerate(reader(text or ""), start=1):
            if count > MAX_DATASET_ROWS:
                message = f"the dataset has more than {MAX_DATASET_ROWS:,} rows; this one and the rest are not read"
                findings.append(_finding(origin, DATASET_INVALID, message, row_line))
                break
            if error:
                findings.append(_finding(origin, DATASET_INVALID, error, row_line))
            elif not isinstance(row, dict):
                findings.append(_finding(origin, DATASET_INVALID, f"a case must be an object, not {_describe(row)}",
                                         row_line))
            elif not self.schemas.is_valid("eval-case", row):
                explained += 1
                if explained > MAX_SCHEMA_ERRORS:
                    findings.append(_finding(origin, DATASET_INVALID, "the row is not a valid case", row_line))
                    continue
                # Rows carry no positions of their own: every finding points at the row's line.
                row_source = Source(path=path, display=display, positions=Positions(values={(): (row_line, 1)}))
                findings.extend(self.schemas.findings("eval-case", row, row_source))
            else:
                cases.append(_case(row, origin, (row_line,)))
        return cases


def _case(data: dict[str, Any], origin: Source, path: JsonPath) -> EvalCase:
    threshold = data.get("threshold")
    return EvalCase(
        id=str(data["id"]),
        vars=dict(data.get("vars") or {}),
        expected=data.get("expected"),
        asserts=tuple(map(Assertion.from_dict, data.get("assert") or ())),
        origin=origin,
        expected_sources=tuple(str(source) for source in data.get("expected_sources") or ()),
        path=path,
        threshold=float(threshold) if threshold is not None else None,
    )


def _jsonl_rows(text: str) -> Iterator[tuple[int, Any, str | None]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, f"invalid JSON: {exc.msg} (column {exc.colno})"
        except (ValueError, RecursionError) as exc:  # over-long integers, absurd nesting
            yield number, None, f"invalid JSON: {exc if isinstance(exc, ValueError) else 'nested too deeply'}"
        else:
            # A row cannot nest deeper than it has brackets: only the rare bracket-heavy row is walked.
            too_deep = line.count("[") + line.count("{") > MAX_DEPTH and _nesting_exceeds(row, MAX_DEPTH)
            yield number, (None if too_deep else row), (f"nests deeper than {MAX_DEPTH} levels" if too_deep else None)


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether JSON-like ``value`` nests deeper than ``limit`` (checked without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def _csv_rows(text: str) -> Iterator[tuple[int, Any, str | None]]:
    """CSV columns: id, expected, and every other column a var (``vars.x`` or ``x``)."""
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = reader.fieldnames or []
        if len(header) > MAX_CSV_COLUMNS:
            yield 1, None, f"the header has {len(header):,} columns; at most {MAX_CSV_COLUMNS:,} are allowed"
            return
        repeated = sorted(name for name, count in Counter(header).items() if count > 1)
        if repeated:
            yield 1, None, f"the header repeats column(s) {', '.join(repeated)}"
            return
        for row in reader:
            yield reader.line_num, *_csv_case(row)
    except csv.Error as exc:
        yield reader.line_num + 1, None, f"invalid CSV: {exc}"  # the row being read when it failed


def _csv_case(row: dict[Any, Any]) -> tuple[Any, str | None]:
    case: dict[str, Any] = {"vars": {}}
    for column, value in row.items():
        if column is None:
            return None, "row has more fields than the header"
        if column in ("id", "expected"):
            case[column] = value
        else:
            case["vars"][column.removeprefix("vars.")] = value
    return case, None


def _yaml_rows(text: str) -> Iterator[tuple[int, Any, str | None]]:
    try:
        data, positions = parse(text)
    except YamlError as exc:
        yield exc.line, None, exc.message
        return
    if not isinstance(data, list):
        yield 1, None, "a YAML dataset must be a list of cases"
        return
    for i, row in enumerate(data):
        yield positions.of((i,))[0], row, None


def build_prompt(data: dict[str, Any], source: Source, findings: list[Finding]) -> PromptSpec:
    """A PromptSpec from schema-valid data (a file, or a release snapshot)."""
    model = data["model"]
    retrieval = data.get("retrieval") or {}
    return PromptSpec(
        id=data["id"],
        model=model["name"],
        params=dict(model.get("params") or {}),
        messages=tuple(_message(m) for m in data["messages"]),
        inputs=dict(data.get("inputs") or {}),
        raw=data,
        source=source,
        description=data.get("description", ""),
        retrieval_config=retrieval.get("config"),
        retrieval_into=retrieval.get("into"),
        output=dict(data.get("output") or {"format": "text"}),
        budget=dict(data.get("budget") or {}),
    )


def _message(data: dict[str, Any]) -> Message:
    return Message(role=data["role"], content=data["content"], name=data.get("name"))


def _retrieval(data: dict[str, Any], source: Source, findings: list[Finding]) -> RetrievalSpec:
    chunking = data["chunking"]
    reranker = data.get("reranker") or {}
    return RetrievalSpec(
        id=data["id"],
        embedding_model=data["embedding"]["model"],
        chunk_size=chunking["size"],
        chunk_overlap=chunking.get("overlap", 0),
        chunk_unit=chunking.get("unit", "tokens"),
        top_k=data["retriever"]["top_k"],
        raw=data,
        source=source,
        reranker_model=reranker.get("model"),
        reranker_top_n=reranker.get("top_n"),
        index_name=(data.get("index") or {}).get("name"),
    )


_READERS = {".jsonl": _jsonl_rows, ".csv": _csv_rows, ".yaml": _yaml_rows, ".yml": _yaml_rows}
