"""The stores below the stages: estimate and evals share the result cache and the prices without importing
each other both ways, and the shared modules import no stage.

Read from the source (every import, also those inside functions), not from what one run happens to import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "promptops"
STAGES = ("ci", "cli", "diff", "estimate", "evals", "lint", "release", "report")


def imported_modules(path: Path) -> set[str]:
    """Every promptops module a file imports, as a dotted name (``from promptops import x`` gives promptops.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            if node.module == "promptops":
                found.update(f"promptops.{alias.name}" for alias in node.names)
    return {name for name in found if name == "promptops" or name.startswith("promptops.")}


def imports_of(package: str) -> set[str]:
    """What the modules of one sub-package import from outside it."""
    inside = f"promptops.{package}"
    return {name for path in sorted((PACKAGE / package).rglob("*.py")) for name in imported_modules(path)
            if name != inside and not name.startswith(inside + ".")}


def test_the_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("from promptops import pricing\ndef f():\n    from promptops.evals.runner import Call\n"
                      "    import promptops.resultcache\n", encoding="utf-8")
    assert imported_modules(source) == {"promptops", "promptops.pricing", "promptops.evals.runner",
                                        "promptops.resultcache"}


def test_estimate_and_evals_do_not_import_each_other_both_ways() -> None:
    estimate_uses_evals = {name for name in imports_of("estimate") if name.startswith("promptops.evals")}
    evals_uses_estimate = {name for name in imports_of("evals") if name.startswith("promptops.estimate")}
    assert evals_uses_estimate  # the runner counts a call's worst case with estimate's token counter, so:
    assert estimate_uses_evals == set()


@pytest.mark.parametrize("module", ["resultcache", "pricing"])
def test_the_shared_stores_import_no_stage(module: str) -> None:
    stages = {name for name in imported_modules(PACKAGE / f"{module}.py")
              if any(name == f"promptops.{stage}" or name.startswith(f"promptops.{stage}.") for stage in STAGES)}
    assert stages == set()
