"""Lint renderers: text, json, github workflow commands and SARIF 2.1.0.

Renderers only format; they never decide what is a finding.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path

import click

from promptops import __version__
from promptops.findings import Finding, Severity
from promptops.model.lint import LintRun, RuleDoc
from promptops.report import versions

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def render(run: LintRun, fmt: str, color: bool = False) -> str:
    return RENDERERS[fmt](run, color)


def repository_path(path: str) -> str:
    """A finding's path relative to the repository root, as GitHub and code scanning expect
    (findings themselves are relative to the current folder, which may be a sub-folder)."""
    base = os.environ.get("GITHUB_WORKSPACE") or _toplevel(os.getcwd())
    absolute = os.path.abspath(path)
    if base and (absolute == base or absolute.startswith(base.rstrip(os.sep) + os.sep)):
        return Path(os.path.relpath(absolute, base)).as_posix()
    return path


@functools.lru_cache(maxsize=4)
def _toplevel(folder: str) -> str | None:
    from promptops import git

    top = git.toplevel(Path(folder))
    return str(top) if top else None


def _all(run: LintRun) -> list[Finding]:
    # By file only: within a file the engine's order stands, its capped findings' count last.
    return sorted(run.config_errors + run.findings, key=lambda finding: finding.path)


def summary(run: LintRun) -> str:
    """'All clean: 1 file checked (and 2 related).' or '1 error, 0 warnings in 1 file (and 2 related).'"""
    findings = _all(run)
    errors = sum(f.severity is Severity.ERROR for f in findings)
    warnings = len(findings) - errors
    files = f"{run.files} file{'s' * (run.files != 1)}"
    related = f" (and {run.related} related)" if run.related else ""
    if not findings:
        return f"All clean: {files} checked{related}."
    return f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)} in {files}{related}."


def printable(text: str) -> str:
    """One line whatever a file contains: control characters shown escaped, never obeyed."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _text(run: LintRun, color: bool) -> str:
    lines = []
    for finding in _all(run):
        where = f"{printable(finding.path)}:{finding.line}:{finding.col}:"
        code = finding.code
        suffix = " (warning)" if finding.severity is Severity.WARNING else ""
        if color:
            where = click.style(where, bold=True)
            code = click.style(code, fg="red" if finding.severity is Severity.ERROR else "yellow", bold=True)
        lines.append(f"{where} {code} {printable(finding.message)}{suffix}")
    lines.append(summary(run))
    return "\n".join(lines) + "\n"


def _json(run: LintRun, color: bool) -> str:
    findings = _all(run)
    document = {
        "version": versions.LINT,
        "files_checked": run.files,
        "related_files_checked": run.related,
        "summary": {
            "errors": sum(f.severity is Severity.ERROR for f in findings),
            "warnings": sum(f.severity is Severity.WARNING for f in findings),
        },
        "findings": [
            {
                "path": f.path, "line": f.line, "column": f.col, "code": f.code,
                "rule": _rule_name(run, f.code),
                "severity": str(f.severity), "message": f.message,
            }
            for f in findings
        ],
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _rule_name(run: LintRun, code: str) -> str:
    return run.rules[code].name if code in run.rules else code


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _github(run: LintRun, color: bool) -> str:
    lines = []
    for f in _all(run):
        name = _rule_name(run, f.code)
        props = (f"file={_escape_property(repository_path(f.path))},line={f.line},col={f.col},"
                 f"title={_escape_property(f'{f.code} {name}')}")
        lines.append(f"::{'error' if f.severity is Severity.ERROR else 'warning'} {props}::{_escape_data(f.message)}")
    lines.append(summary(run))
    return "\n".join(lines) + "\n"


def _sarif(run: LintRun, color: bool) -> str:
    from urllib.parse import quote  # only SARIF needs it: keep it off the commit-hook path

    rules = sorted(run.rules.values(), key=lambda r: r.code)
    index = {rule.code: i for i, rule in enumerate(rules)}
    results = []
    for f in _all(run):
        result: dict[str, object] = {
            "ruleId": f.code,
            "level": "error" if f.severity is Severity.ERROR else "warning",
            "message": {"text": f.message},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": quote(repository_path(f.path), safe="/")},
                    "region": {"startLine": f.line, "startColumn": f.col},
                }
            }],
        }
        if f.code in index:
            result["ruleIndex"] = index[f.code]
        results.append(result)
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "promptops",
                "version": __version__,
                "informationUri": "https://github.com/promptops/promptops",
                "rules": [_sarif_rule(rule) for rule in rules],
            }},
            "results": results,
        }],
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


RENDERERS: dict[str, Callable[[LintRun, bool], str]] = {
    "text": _text, "json": _json, "github": _github, "sarif": _sarif,
}


def _sarif_rule(rule: RuleDoc) -> dict[str, object]:
    first = rule.doc.partition("\n\n")[0]
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": " ".join(first.split())},
        "fullDescription": {"text": " ".join(rule.doc.split())},
        "help": {"text": rule.doc},
        "defaultConfiguration": {"level": "error" if rule.severity is Severity.ERROR else "warning"},
    }
