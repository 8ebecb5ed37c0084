"""Every test file or folder the documentation, CI, benchmarks and code comments name exists: tests move with
the package's layout (tests/lint/, tests/evals/...), and a path left behind would send a reader nowhere."""

from __future__ import annotations

import re
from pathlib import Path

from helpers.repo import ROOT, source_files

# tests/<folders>/<name>, with an optional ::test; the text around it may be Markdown, YAML, shell or Python.
NAMED = re.compile(r"(?<![\w/.])(tests/(?:[\w.-]+/)*[\w.*-]*\w)")
TEXT = {".md", ".py", ".toml", ".yaml", ".yml", ".cfg"}


def naming_files() -> list[str]:
    """The checkout's text files outside tests/, and CI's scripts (no suffix)."""
    return [name for name in source_files() if not name.startswith("tests/")
            and (Path(name).suffix in TEXT or name.startswith(".ci/"))]


def missing_paths(text: str) -> list[str]:
    return sorted({path for path in NAMED.findall(text) if not any(ROOT.glob(path))})


def test_every_named_test_path_exists() -> None:
    stale = {name: missing for name in naming_files()
             if (missing := missing_paths((ROOT / name).read_text(encoding="utf-8", errors="replace")))}
    assert stale == {}


def test_the_check_finds_the_paths_it_checks() -> None:
    assert "README.md" in naming_files() and ".ci/deps" in naming_files()
    named = NAMED.findall("see tests/lint/test_rule_cases.py::test_x, tests/golden/ and `tests/security/test_*.py`.")
    assert named == ["tests/lint/test_rule_cases.py", "tests/golden", "tests/security/test_*.py"]
    assert missing_paths("run tests/test_lint_fixtures.py and tests/lint/test_lint_fixtures.py") == [
        "tests/test_lint_fixtures.py"]
