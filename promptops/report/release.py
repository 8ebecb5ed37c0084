"""Renderers of the release stage: `promptops status` (text, JSON), `promptops history` (text, JSON) and what
`promptops promote` and `promptops rollback` say they did. They format; the stage decides."""

from __future__ import annotations

import json
import os
from typing import Any

from promptops.model.release import BEHIND, CURRENT, REMOVED, SNAPSHOT_OK, Action, Cell, ReleaseOutcome, Row

Line = tuple[str, bool]  # a line of text, and whether it goes to stderr (a note) rather than stdout


def status_text(rows: list[Row], environments: list[str], problems: list[str]) -> str:
    """A plain table: the head's version, then per environment the version held and how it stands; then every
    release whose snapshot is missing or altered."""
    header = ["prompt", "head", *environments]
    table = [header]
    for row in rows:
        table.append([row.prompt_id, row.head or "(removed)", *(_describe(row.cells[env]) for env in environments)])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    lagging = sum(cell is not None and cell.state != CURRENT for row in rows for cell in row.cells.values())
    entries = "entry" if lagging == 1 else "entries"
    footer = f"\n{len(rows)} prompt(s); {lagging} environment {entries} behind head or removed."
    if problems:
        footer += (f"\n{len(problems)} release snapshot(s) missing or altered (apps cannot load them as promoted; "
                   "restore them from git):" + "".join(f"\n  {problem}" for problem in problems))
    return "\n".join(lines) + "\n" + (footer + "\n" if rows else "no prompts and nothing promoted yet\n")


def _describe(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    marks = {CURRENT: "", BEHIND: " (behind)", REMOVED: " (removed)"}[cell.state]
    broken = "" if cell.snapshot == SNAPSHOT_OK else f" (snapshot {cell.snapshot})"
    return f"{cell.version}{marks}{' (forced)' if cell.forced else ''}{broken}"


def status_json(rows: list[Row], environments: list[str], problems: list[str]) -> str:
    document = {
        "schema_version": 1,
        "environments": environments,
        "snapshot_problems": problems,
        "prompts": [{"id": row.prompt_id, "head": row.head,
                     "environments": {env: (None if cell is None else cell.__dict__)
                                      for env, cell in row.cells.items()}}
                    for row in rows],
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def history_text(records: list[dict[str, Any]]) -> str:
    lines = []
    for record in records:
        move = f"{record.get('previous') or '(none)'} -> {record.get('version')}"
        evidence = record.get("evidence") or {}
        rate = f"pass {evidence['pass_rate']:.0%} of {evidence['cases']}" if "pass_rate" in evidence else "no evidence"
        forced = f"  FORCED: {record.get('reason')}" if record.get("forced") else ""
        reason = f"  reason: {record['reason']}" if record.get("reason") and not record.get("forced") else ""
        lines.append(f"{record.get('at')}  {record.get('action'):<8} {record.get('environment'):<10} {move}  "
                     f"by {record.get('by')}  commit {str(record.get('commit'))[:12]}  {rate}{forced}{reason}")
    return "\n".join(lines) + "\n"


def history_json(records: list[dict[str, Any]]) -> str:
    return json.dumps(records, indent=2, sort_keys=True) + "\n"


def outcome_lines(outcome: ReleaseOutcome) -> list[Line]:
    """What a promotion or rollback did (or that there was nothing to do), its evidence, and what it wrote."""
    if outcome.action is Action.UNCHANGED:
        lines = [(f"{outcome.environment} already holds '{outcome.prompt_id}' {outcome.version}; nothing to do", False)]
        return lines + [(f"  note: {note}", True) for note in outcome.notes]  # an audit line a stopped run left out
    verb = "rolled back" if outcome.action is Action.ROLLBACK else "promoted"
    was = f" (was {outcome.previous})" if outcome.previous else " (first version there)"
    lines = [(f"{verb} '{outcome.prompt_id}' {outcome.version} in {outcome.environment}{was}", False)]
    if outcome.evidence:
        label = "evidence when first promoted" if outcome.action is Action.ROLLBACK else "evidence"
        lines.append((f"  {label}: {_evidence(outcome.evidence)}", False))
    lines += [(f"  FORCED past: {problem}", False) for problem in outcome.overridden]
    lines += [(f"  note: {note}", True) for note in outcome.notes]
    lines += [(f"  wrote {os.path.relpath(path)}", False) for path in outcome.written]
    if outcome.committed:
        lines.append((f"  committed {outcome.committed[:12]}", False))
    return lines


def _evidence(evidence: dict[str, Any]) -> str:
    cost = "unknown" if evidence["cost_per_call_usd"] is None else f"${evidence['cost_per_call_usd']:.6f}"
    p95 = ("not measured (answers from the cache)" if evidence["latency_p95_ms"] is None
           else f"{evidence['latency_p95_ms']:.0f} ms")
    return (f"{len(evidence['suites'])} suite(s), {evidence['cases']} case(s), pass rate {evidence['pass_rate']:.0%}, "
            f"{cost} per call, p95 {p95}, {evidence['model_calls']} new model call(s)")
