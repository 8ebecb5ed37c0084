"""Helpers shared by the lint tests: the failing and passing fixtures and their expectations, many CLI runs at once."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from helpers.cli import CliResult, cli_env, run_promptops, run_promptops_process
from helpers.leaks import BACKGROUND
from helpers.repo import TESTS

BAD = TESTS / "fixtures" / "bad"
GOOD = TESTS / "fixtures" / "good"  # each the same input as bad/ of its name, with the problem fixed
CLI_TIMEOUT_S = 20.0

_ITEM = re.compile(
    r"^(?P<code>PO\d{3})(?:\s+(?P<path>\S+))?\s+line\s+(?P<line>\d+)"
    r"(?:\s+(?P<severity>warning|error))?(?:\s+\"(?P<message>[^\"]*)\")?$"
)
_EXIT = re.compile(r"^exit\s+(?P<code>\d)$")


@dataclass(frozen=True)
class Expected:
    path: str
    code: str
    line: int
    severity: str = "error"
    message: str | None = None


@dataclass
class Case:
    """One broken fixture: a single file, or a project folder."""

    name: str
    source: Path
    expected: list[Expected] = field(default_factory=list)
    exit_code: int = 1

    @property
    def is_project(self) -> bool:
        return self.source.is_dir()

    def copy_to(self, parent: Path) -> tuple[Path, list[str]]:
        """Copy the case into ``parent``; return the folder to run in and the CLI paths."""
        target = parent / self.name
        if self.is_project:
            shutil.copytree(self.source, target, symlinks=True)
            return target, []
        target.mkdir(parents=True)
        shutil.copy2(self.source, target / self.source.name)
        return target, [self.source.name]


def parse_expectations(first_line: str, default_path: str) -> tuple[list[Expected], int | None]:
    """``# expect: PO101 line 4; PO203 other/file.yaml line 2 warning "text"; exit 2``."""
    match = re.match(r"^#\s*expect:\s*(.+?)\s*$", first_line)
    if not match:
        raise ValueError(f"{default_path}: the first line must be '# expect: ...', got {first_line!r}")
    expected: list[Expected] = []
    exit_code = None
    for raw in match.group(1).split(";"):
        item = raw.strip()
        if exit_match := _EXIT.match(item):
            exit_code = int(exit_match.group("code"))
            continue
        item_match = _ITEM.match(item)
        if not item_match:
            raise ValueError(f"{default_path}: cannot read expectation {item!r}")
        expected.append(Expected(
            path=item_match.group("path") or default_path,
            code=item_match.group("code"),
            line=int(item_match.group("line")),
            severity=item_match.group("severity") or "error",
            message=item_match.group("message"),
        ))
    return expected, exit_code


def discover_cases() -> list[Case]:
    cases = []
    for entry in sorted(BAD.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        case = Case(name=entry.name.split(".")[0], source=entry)
        files = sorted(p for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else [entry]
        exit_codes = set()
        for path in files:
            if path.suffix not in (".yaml", ".yml"):
                continue
            first = path.read_text(encoding="utf-8").split("\n", 1)[0]
            if not first.startswith("# expect:"):
                continue
            relative = path.relative_to(entry).as_posix() if entry.is_dir() else path.name
            expected, exit_code = parse_expectations(first, relative)
            case.expected.extend(expected)
            if exit_code is not None:
                exit_codes.add(exit_code)
        if not case.expected:
            raise ValueError(f"fixture {entry} declares no '# expect:' line")
        case.exit_code = exit_codes.pop() if exit_codes else 1
        cases.append(case)
    return cases


def fixed_codes(good: Path) -> list[str]:
    """The codes a passing fixture answers, from the ``# fixes: PO101, PO102`` line its first file opens with."""
    files = sorted(p for p in good.rglob("*.yaml") if p.is_file()) if good.is_dir() else [good]
    for path in files:
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
        if match := re.match(r"^#\s*fixes:\s*(PO\d{3}(?:\s*,\s*PO\d{3})*)\s*$", first):
            return re.split(r"\s*,\s*", match.group(1))
    raise ValueError(f"fixture {good} declares no '# fixes: POxxx' line")


def discover_fixed() -> dict[str, Case]:
    """The passing fixtures by the code they answer, each a Case (named as its failing twin) that expects nothing."""
    by_code: dict[str, Case] = {}
    for entry in sorted(GOOD.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        for code in fixed_codes(entry):
            if code in by_code:
                raise ValueError(f"{code} has two passing fixtures: {by_code[code].source.name} and {entry.name}")
            by_code[code] = Case(name=entry.name.split(".")[0], source=entry, exit_code=0)
    return by_code


def assert_no_traceback(result: CliResult) -> None:
    for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        assert "Traceback (most recent call last)" not in text, f"traceback in {stream}:\n{text}"
        assert not re.search(r"^\w+(Error|Exception): ", text, re.MULTILINE), f"raw exception in {stream}:\n{text}"


class CliPool:
    """Runs many CLI invocations at once (two per core), each in its own folder.

    A test file registers its cases up front; a module-scoped fixture starts them all
    and each test waits only for its own, so a slow machine runs the ~0.3 s start-up of
    each process in parallel rather than one after the other. With ``in_process``, each
    runs at once in this process instead (helpers.cli.run_promptops): no start-up at all.
    """

    def __init__(self, base: Path, in_process: bool = False) -> None:
        self.base = base
        self.in_process = in_process
        self._pool = ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 2))
        self._runs: dict[str, tuple[Path, Future[CliResult]]] = {}

    def start(self, name: str, prepare: Callable[[Path], list[str]]) -> None:
        """``prepare`` fills the case's folder and returns the CLI arguments."""
        folder = self.base / name
        folder.mkdir(parents=True)
        args = prepare(folder)
        if self.in_process:
            done: Future[CliResult] = Future()
            done.set_result(run_promptops(args, folder, env=cli_env(), timeout=CLI_TIMEOUT_S))
            self._runs[name] = (folder, done)
            return
        # They run on while the module's tests do: marked, so that only the module's leak check counts them.
        env = cli_env() | {BACKGROUND: "1"}
        self._runs[name] = (folder, self._pool.submit(run_promptops_process, args, folder, env, CLI_TIMEOUT_S))

    def result(self, name: str) -> tuple[Path, CliResult]:
        folder, future = self._runs[name]
        return folder, future.result(timeout=CLI_TIMEOUT_S * 4)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
