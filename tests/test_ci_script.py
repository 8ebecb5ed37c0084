"""CI's scripts against README: the default job runs README's own commands, and
the opt-in dependency jobs name tests that exist and the floors README records."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from helpers.repo import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def commands(script: Path) -> list[str]:
    """The script's lines that are commands: no comments, no blank lines."""
    lines = (line.strip() for line in script.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def readme_command(pattern: str) -> list[str]:
    """README's command that matches ``pattern``, split at ``&&`` into its steps."""
    found = re.search(pattern, README, re.MULTILINE)
    assert found, f"README.md no longer has a command matching {pattern!r}"
    return [step.strip() for step in found.group(1).split("&&")]


def test_ci_runs_readmes_own_commands_in_a_virtualenv_inside_the_clone() -> None:
    venv = readme_command(r"`(python3 -m venv \.venv && [^`]+)` first")
    tests = readme_command(r"^(pip install -e '\.\[test\]' && python -m pytest -q)\s+# the tests")
    checks = readme_command(r"^(pip install -e '\.\[dev\]' && ruff check && mypy)\s+# lint and type-check")
    steps = commands(ROOT / ".ci/run")
    expected = [*venv, *tests, *checks]
    found = [step for step in steps if step in expected]
    assert found == expected, f".ci/run must run README's commands in order: {expected}, found {found}"


def test_the_dependency_jobs_name_tests_that_exist() -> None:
    named = re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", (ROOT / ".ci/deps").read_text(encoding="utf-8"))
    assert len(named) >= 10, named
    for path, test in named:
        assert (ROOT / path).is_file(), f".ci/deps runs {path}, which does not exist"
        if test:
            assert re.search(rf"^def {test}\(", (ROOT / path).read_text(encoding="utf-8"), re.MULTILINE), \
                f".ci/deps runs {path}::{test}, which does not exist"


def load_ranges() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_ranges", ROOT / ".ci/ranges.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_records_each_dependency_at_the_floor_pyproject_gives() -> None:
    """When a lower bound moves, README's table of tested versions must move with it."""
    ranges = load_ranges()
    table = {row[0]: row for row in re.findall(r"^\| (\S+) \| `([^`]+)` \| ([^|]+?) \| ([^|]+?) \|$", README,
                                               re.MULTILINE)}
    for requirement in ranges.requirements():
        assert requirement.name in table, f"README's table of tested versions has no row for {requirement.name}"
        _, specifier, lowest, _ = table[requirement.name]
        assert SpecifierSet(specifier) == requirement.specifier, \
            f"{requirement.name}: README gives the range {specifier}, pyproject.toml {requirement.specifier}"
        floor = ranges.floor(requirement)
        assert Version(lowest) == Version(floor), \
            f"{requirement.name}: README says {lowest} was the lowest tested, pyproject.toml's floor is {floor}: " \
            f"run `.ci/run deps-lowest` and update the table"
