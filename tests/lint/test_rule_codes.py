"""Every rule code the package writes is registered (so --explain, the README table and SARIF know it),
and every registered code is written somewhere (no rule that nothing can report)."""

from __future__ import annotations

import re
from pathlib import Path

import promptops
from promptops.lint import all_rules

PACKAGE = Path(promptops.__file__).resolve().parent
CODE = re.compile(r"""["'](PO\d{3})["']""")


def codes_in_the_source() -> dict[str, list[str]]:
    """Each quoted rule code in the package's modules, with the files that quote it."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for code in set(CODE.findall(path.read_text(encoding="utf-8"))):
            found.setdefault(code, []).append(str(path.relative_to(PACKAGE)))
    return found


def test_every_code_the_package_writes_is_registered() -> None:
    unregistered = {code: files for code, files in codes_in_the_source().items() if code not in all_rules()}
    assert unregistered == {}


def test_every_registered_code_is_written_somewhere() -> None:
    assert sorted(set(all_rules()) - set(codes_in_the_source())) == []


def test_the_check_can_fail() -> None:
    assert CODE.findall('Finding(path, 1, 1, "PO999", "x")') == ["PO999"] and "PO999" not in all_rules()


def test_a_code_is_quoted_only_where_it_is_defined() -> None:
    """A module below lint writes a code through its constant in promptops/codes.py; a lint module quotes
    the codes it registers, in the registration; nowhere else is a rule code a bare string."""
    quoted_elsewhere = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py")) if path.name != "codes.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if CODE.search(line) and not re.match(r"\s*(@rule|loader_rule)\(", line)
    ]
    assert quoted_elsewhere == []


def test_each_code_constant_is_named_after_its_rule() -> None:
    from promptops import codes

    constants = {name: value for name, value in vars(codes).items() if name.isupper()}
    assert constants and all(all_rules()[code].name.upper().replace("-", "_") == name
                             for name, code in constants.items())
