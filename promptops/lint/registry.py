"""The rule registry: every rule has a stable code, a dotted name, a default
severity, the kind of spec it checks, and a docstring that ``--explain`` prints."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptops.findings import Severity
from promptops.specs import Source
from promptops.yamlparse import JsonPath

if TYPE_CHECKING:
    from promptops.lint.project import LintProject

SCOPES = ("file", "prompt", "retrieval", "eval", "config", "loader", "cost")


@dataclass(frozen=True)
class Hit:
    """A rule's raw result; the engine adds the code and severity."""

    source: Source
    line: int
    col: int
    message: str


def hit(source: Source, path: JsonPath, message: str, *, key: bool = False) -> Hit:
    line, col = source.where(path, key=key)
    return Hit(source, line, col, message)


HitFinder = Callable[[Any, "LintProject"], Iterable[Hit]]


@dataclass(frozen=True)
class LintRule:
    code: str
    name: str
    severity: Severity
    scope: str
    doc: str
    find_hits: HitFinder | None  # None: the loader reports it

    def explain(self) -> str:
        where = {
            "loader": "reported while reading files",
            "cost": "reported by promptops cost",
            "file": "checks every file",
        }.get(self.scope, f"checks {self.scope} files")
        return f"{self.code} {self.name} ({self.severity}, {where})\n\n{self.doc}\n"


RULES: dict[str, LintRule] = {}


def rule(code: str, name: str, scope: str, severity: Severity = Severity.ERROR) -> Callable[[HitFinder], HitFinder]:
    """Register a function that finds a rule's hits as the rule."""
    assert scope in SCOPES, scope

    def register(find_hits: HitFinder) -> HitFinder:
        _add(LintRule(code, name, severity, scope, inspect.cleandoc(find_hits.__doc__ or ""), find_hits))
        return find_hits

    return register


def loader_rule(code: str, name: str, doc: str, severity: Severity = Severity.ERROR, scope: str = "loader") -> None:
    """Register a rule whose findings another stage produces (the loader, or the cost estimate)."""
    _add(LintRule(code, name, severity, scope, inspect.cleandoc(doc), None))


def _add(new: LintRule) -> None:
    if new.code in RULES or any(r.name == new.name for r in RULES.values()):
        raise ValueError(f"rule {new.code} {new.name} registered twice")
    RULES[new.code] = new


def all_rules() -> dict[str, LintRule]:
    """Import every rule module once so that the registry is complete."""
    from promptops.lint import budget, corpus, evals, files, lock, retrieval, security, store, templates  # noqa: F401

    return RULES


def find_rule(code_or_name: str) -> LintRule | None:
    rules = all_rules()
    wanted = code_or_name.strip()
    return rules.get(wanted.upper()) or next((r for r in rules.values() if r.name == wanted.lower()), None)
