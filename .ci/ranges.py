"""The dependency ranges in pyproject.toml: runtime and the test extra.

    python .ci/ranges.py floors            one constraint a line, each dependency pinned at its lower bound
    python .ci/ranges.py versions PYTHON   each dependency: the version PYTHON's environment has (- for none), its range

`.ci/deps` uses the first to install the lowest versions the ranges admit, the
second to print what a run tested. Needs `packaging`, and `tomli` before
Python 3.11.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
EXTRA = "test"


def requirements() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return [Requirement(line) for line in [*project["dependencies"], *project["optional-dependencies"][EXTRA]]]


def floor(requirement: Requirement) -> str:
    """The lowest version the range admits; a range without one cannot be tested at its bottom."""
    bounds = [spec.version for spec in requirement.specifier if spec.operator in (">=", "==", "~=")]
    if len(bounds) != 1:
        sys.exit(f"pyproject.toml: {requirement} needs exactly one lower bound (>=, == or ~=) to be tested at it")
    return bounds[0]


def floors() -> list[str]:
    lines = []
    for requirement in requirements():
        marker = f"; {requirement.marker}" if requirement.marker else ""
        lines.append(f"{requirement.name}=={floor(requirement)}{marker}")
    return lines


def installed_versions(python: str) -> dict[str, str]:
    """Every distribution in PYTHON's environment, by canonical name."""
    done = subprocess.run([python, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True,
                          check=True)
    return {canonicalize_name(item["name"]): item["version"] for item in json.loads(done.stdout)}


def versions_table(python: str) -> list[str]:
    wanted = requirements()
    found = installed_versions(python)
    width = max(len(requirement.name) for requirement in wanted)
    return [f"{r.name:<{width}}  {found.get(canonicalize_name(r.name), '-'):<12}  {r.specifier}"
            + (f"; {r.marker}" if r.marker else "") for r in wanted]


def main(argv: list[str]) -> int:
    if argv[:1] == ["floors"] and len(argv) == 1:
        print("\n".join(floors()))
    elif argv[:1] == ["versions"] and len(argv) == 2:
        print("\n".join(versions_table(argv[1])))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
