"""README.md tells the truth about what the code declares: its rules table matches the rule registry,
and its Dependencies table matches pyproject.toml's dependencies."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from promptops.lint import all_rules

try:
    import tomllib
except ImportError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The lines under a Markdown heading, up to the next heading of the same or a higher level
    (a line in a fenced code block is never a heading)."""
    lines = README.splitlines()
    start = lines.index(next(line for line in lines if re.fullmatch(rf"#+ {re.escape(title)}", line)))
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    body, fenced = [], False
    for line in lines[start + 1:]:
        fenced ^= line.startswith("```")
        heading = re.match(r"(#+) ", line)
        if heading and not fenced and len(heading.group(1)) <= level:
            break
        body.append(line)
    return "\n".join(body)


def table_rows(text: str) -> list[list[str]]:
    """The cells of each row of the first Markdown table in ``text``, without the header and rule lines."""
    all_lines = text.splitlines()
    first = next((i for i, line in enumerate(all_lines) if line.startswith("|")), len(all_lines))
    lines = list(itertools.takewhile(lambda line: line.startswith("|"), all_lines[first:]))
    assert len(lines) > 2, "no table"
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[2:]]


def test_the_rules_table_matches_the_registry() -> None:
    rows = {code: (name, severity) for code, name, severity, *_ in table_rows(section("Rules"))}
    registered = {code: (rule.name, str(rule.severity)) for code, rule in all_rules().items()}
    assert sorted(set(registered) - set(rows)) == [], "rules without a row in README's table"
    assert sorted(set(rows) - set(registered)) == [], "rows in README's table for no registered rule"
    wrong = {code: (rows[code], registered[code]) for code in rows if rows[code] != registered[code]}
    assert wrong == {}, "README row (name, severity) vs the registry"


def test_the_rules_table_is_in_code_order() -> None:
    codes = [row[0] for row in table_rows(section("Rules"))]
    assert codes == sorted(codes)


def test_the_dependencies_table_matches_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    wanted = {canonicalize_name(r.name): r.specifier for r in map(Requirement, declared)}
    rows = table_rows(section("Dependencies"))
    documented = {canonicalize_name(name): SpecifierSet(spec.strip("`")) for name, spec, *_ in rows}
    assert len(rows) == len(documented), "a package listed twice"
    assert sorted(set(wanted) - set(documented)) == [], "dependencies README does not list"
    assert sorted(set(documented) - set(wanted)) == [], "README lists packages pyproject.toml does not declare"
    differ = {name: (str(documented[name]), str(wanted[name])) for name in wanted if documented[name] != wanted[name]}
    assert differ == {}, "README range vs pyproject.toml range"


def test_section_finds_only_its_own_text() -> None:
    rules = section("Rules")
    assert "| PO101 |" in rules and "### Suppressions" not in rules
    assert "| litellm |" in section("Dependencies") and "## Speed" not in section("Dependencies")
