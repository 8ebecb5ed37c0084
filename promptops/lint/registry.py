"""The rule registry: every rule has a stable code, a dotted name, a default
severity, the kind of spec it checks, and a docstring that ``--explain`` prints."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from promptops.findings import Severity
from promptops.specs import Source
from promptops.yamlparse import JsonPath

if TYPE_CHECKING:
    from promptops.lint.project import Project

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


Check = Callable[[Any, "Project"], Iterable[Hit]]


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    scope: str
    doc: str
    check: Check | None  # None: the loader reports it

    def explain(self) -> str:
        where = {
            "loader": "reported while reading files",
            "cost": "reported by promptops cost",
            "file": "checks every file",
        }.get(self.scope, f"checks {self.scope} files")
        return f"{self.code} {self.name} ({self.severity}, {where})\n\n{self.doc}\n"


RULES: dict[str, Rule] = {}


def rule(code: str, name: str, scope: str, severity: Severity = Severity.ERROR) -> Callable[[Check], Check]:
    """Register a check function as a rule."""
    assert scope in SCOPES, scope

    def register(check: Check) -> Check:
        _add(Rule(code, name, severity, scope, inspect.cleandoc(check.__doc__ or ""), check))
        return check

    return register


def loader_rule(code: str, name: str, doc: str, severity: Severity = Severity.ERROR, scope: str = "loader") -> None:
    """Register a rule whose findings another stage produces (the loader, or the cost estimate)."""
    _add(Rule(code, name, severity, scope, inspect.cleandoc(doc), None))


def _add(new: Rule) -> None:
    if new.code in RULES or any(r.name == new.name for r in RULES.values()):
        raise ValueError(f"rule {new.code} {new.name} registered twice")
    RULES[new.code] = new


def load_rules() -> dict[str, Rule]:
    """Import every rule module once so that the registry is complete."""
    from promptops.lint import budget, corpus, evals, files, lock, retrieval, security, store, templates  # noqa: F401

    return RULES


def find_rule(code_or_name: str) -> Rule | None:
    rules = load_rules()
    wanted = code_or_name.strip()
    return rules.get(wanted.upper()) or next((r for r in rules.values() if r.name == wanted.lower()), None)
