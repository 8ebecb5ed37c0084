"""The package's layers, read from the source (ast): renderers import no stage, the data layer imports
nothing above it, the shared stores (result cache, prices) import no stage, and no two sub-packages import
each other, directly or round a longer loop.

Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "promptops"
# The pipeline's stages: a renderer reads what they built (promptops.model), never the code that built it.
STAGES = ("ci", "diff", "estimate", "evals", "lint", "release", "gitrefs", "config", "publish", "cli", "commands")
# What the data layer may import: itself, and the findings every stage reports.
BELOW_THE_STAGES = ("promptops.model", "promptops.findings")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The promptops modules ``path`` imports: ``from a.b import c`` counts as a.b and a.b.c."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _relative(path, node.level, node.module) if node.level else node.module or ""
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "promptops" or name.startswith("promptops.")}


def _relative(path: Path, level: int, module: str | None) -> str:
    """The absolute name of ``from .module import ...`` (``level`` dots) written in ``path``."""
    package = module_name(path).split(".")[: None if path.name == "__init__.py" else -1]
    return ".".join(package[: len(package) - level + 1] + ([module] if module else []))


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize("path", modules("report"), ids=lambda path: path.name)
def test_a_renderer_imports_no_stage(path: Path) -> None:
    stages = sorted(name for name in imports(path) for stage in STAGES if within(name, f"promptops.{stage}"))
    assert not stages, f"{module_name(path)} imports a stage: {stages}; read the data from promptops.model instead"


@pytest.mark.parametrize("path", modules("model"), ids=lambda path: path.name)
def test_the_data_layer_imports_nothing_above_it(path: Path) -> None:
    above = sorted(name for name in imports(path) if not any(within(name, low) for low in BELOW_THE_STAGES))
    assert not above, f"{module_name(path)} imports {above}: the data layer sits below every stage and renderer"


def sub_packages() -> list[str]:
    return sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


def dependencies() -> dict[str, set[str]]:
    """Sub-package -> the other sub-packages its modules import."""
    names = sub_packages()
    graph: dict[str, set[str]] = {name: set() for name in names}
    for name in names:
        for path in modules(name):
            graph[name] |= {other for imported in imports(path) for other in names
                            if other != name and within(imported, f"promptops.{other}")}
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected groups of more than one node (Tarjan's algorithm)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for after in sorted(graph[node]):
            if after not in order:
                visit(after)
                low[node] = min(low[node], low[after])
            elif after in stack:
                low[node] = min(low[node], order[after])
        if low[node] == order[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                found.add(frozenset(group))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return found


def test_no_import_cycle_between_sub_packages() -> None:
    found = sorted(sorted(group) for group in cycles(dependencies()))
    assert not found, f"sub-packages that import each other: {found}"


def test_the_cycle_finder_finds_a_loop_through_three_packages() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == {frozenset({"a", "b", "c"})}
    assert cycles({"a": {"b"}, "b": set()}) == set()


def test_a_stage_import_is_seen_in_any_form(tmp_path: Path) -> None:
    """What the renderer test reads: absolute, relative and lazy imports alike."""
    source = PACKAGE / "report" / "check.py"
    found = imports(source)
    assert "promptops.model.check" in found and "promptops.report.safety.inline" in found
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import promptops.evals.stats\n    from promptops.ci import run_check\n")
    assert {"promptops.evals.stats", "promptops.ci", "promptops.ci.run_check"} <= imports(probe)
    assert _relative(PACKAGE / "report" / "check.py", 2, "evals") == "promptops.evals"
    assert _relative(PACKAGE / "report" / "__init__.py", 1, "charts") == "promptops.report.charts"


@pytest.mark.parametrize("module", ["resultcache", "pricing", "lockfile", "git"])
def test_the_shared_stores_import_no_stage(module: str) -> None:
    stages = sorted(name for name in imports(PACKAGE / f"{module}.py")
                    for stage in (*STAGES, "cli", "report") if within(name, f"promptops.{stage}"))
    assert not stages, f"promptops.{module} sits below the stages but imports {stages}"


def test_estimate_imports_nothing_of_evals() -> None:
    """The runner counts a call's worst case with estimate's token counter, so the arrow points one way."""
    assert not [name for path in modules("estimate") for name in imports(path) if within(name, "promptops.evals")]
    assert any(within(name, "promptops.estimate") for path in modules("evals") for name in imports(path))
