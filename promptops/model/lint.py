"""A lint run's findings, as the lint stage builds them and the reports read them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from promptops.findings import Finding, Severity


class RuleDoc(Protocol):
    """What a report says of a rule: ``promptops.lint.registry.LintRule`` is one (read-only, as it is frozen)."""

    @property
    def code(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def doc(self) -> str: ...

    @property
    def severity(self) -> Severity: ...


@dataclass
class LintRun:
    findings: list[Finding] = field(default_factory=list)
    # The rules the run checked against, by code: their names in findings, SARIF's rule list.
    rules: Mapping[str, RuleDoc] = field(default_factory=dict)
    files: int = 0  # the files named, or found in the folders named
    related: int = 0  # others checked for their sake: promptops.yaml, the eval suites of the prompts named
    config_errors: list[Finding] = field(default_factory=list)
    incomplete: set[str] = field(default_factory=set)  # files whose schema errors were not all looked for

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    def count(self, named: bool) -> None:
        if named:
            self.files += 1
        else:
            self.related += 1
