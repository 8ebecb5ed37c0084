"""Renderers for a SpecDiff: plain text for a terminal, JSON, and Markdown.

In Markdown, everything from the pull request (ids, paths, field values, event
messages) goes through ``safety.inline``, inside ``<summary>`` too, where a
backslash escape would be shown as it is and a mention or issue reference
would stay live; template diffs are fenced by ``safety.block``, as every renderer fences text.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from promptops.model.diff import ItemDiff, SpecDiff
from promptops.report import versions
from promptops.report.safety import block, inline

_STATUS_WORDS = {"added": "added", "removed": "removed", "modified": "modified", "renamed": "renamed",
                 "unchanged": "unchanged", "unloadable": "does not load at head"}


def render_json(diff: SpecDiff, base_label: str, head_label: str) -> str:
    document = {"schema_version": versions.DIFF, "base": base_label, "head": head_label, **to_json(diff)}
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def to_json(diff: SpecDiff) -> dict[str, Any]:
    """The diff as plain JSON data, with fixed keys (render with sort_keys for stable bytes)."""
    return {
        "prompts": [_item_json(item) for item in diff.prompts],
        "retrievals": [_item_json(item) for item in diff.retrievals],
        "events": [{"kind": e.kind, "item": e.item, "id": e.id, "message": e.message} for e in diff.events],
    }


def _item_json(item: ItemDiff) -> dict[str, Any]:
    return {
        "kind": item.kind,
        "id": item.id,
        "status": item.status,
        "base_path": item.base_path,
        "head_path": item.head_path,
        "base_version": item.base_version,
        "head_version": item.head_version,
        "formatting_only": item.formatting_only,
        "changes": [
            {"path": c.path, "category": c.category, "kind": c.kind, "old": copy.deepcopy(c.old),
             "new": copy.deepcopy(c.new)}
            for c in item.changes
        ],
        "template_diffs": [
            {"message_index": t.message_index, "role": t.role, "unified": t.unified} for t in item.template_diffs
        ],
    }


def _changed(diff: SpecDiff) -> list[ItemDiff]:
    """Items worth a reader's time: everything but untouched files."""
    return [i for i in (*diff.prompts, *diff.retrievals) if i.status != "unchanged" or i.formatting_only]


def _where(item: ItemDiff) -> str:
    if item.status == "renamed" and item.base_path != item.head_path:
        return f"{item.base_path} → {item.head_path}"
    return item.head_path or item.base_path or ""


def _value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _change_lines(item: ItemDiff) -> list[str]:
    if item.status in ("removed", "unloadable"):
        return []
    if not item.changes:
        return ["no semantic change" + (" (formatting only)" if item.formatting_only else "")]
    templated = {f"messages[{t.message_index}].content" for t in item.template_diffs}
    lines = []
    for change in item.changes:
        if change.path in templated:
            lines.append(f"{change.category:<9} {change.path}: template changed (diff below)")
        elif change.kind == "added":
            lines.append(f"{change.category:<9} {change.path}: added {_value(change.new)}")
        elif change.kind == "removed":
            lines.append(f"{change.category:<9} {change.path}: removed (was {_value(change.old)})")
        else:
            lines.append(f"{change.category:<9} {change.path}: {_value(change.old)} → {_value(change.new)}")
    return lines


def render_text(diff: SpecDiff, base_label: str, head_label: str) -> str:
    out = [f"Changes: {base_label} → {head_label}"]
    items = _changed(diff)
    if not items and not diff.events:
        out.append("No prompt or retrieval config changed.")
    for item in items:
        out.append("")
        out.append(f"{item.kind} {item.id}  {_where(item)}  ({_STATUS_WORDS[item.status]})")
        out.extend(f"  {line}" for line in _change_lines(item))
        for template in item.template_diffs:
            out.extend(f"    {line}" for line in template.unified.rstrip("\n").splitlines())
    if diff.events:
        out.append("")
        out.append("Needs attention:")
        out.extend(f"  ! {event.kind} ({event.item} {event.id}): {event.message}" for event in diff.events)
    return "\n".join(out) + "\n"


def render_markdown(diff: SpecDiff, base_label: str, head_label: str) -> str:
    out = [f"### Prompt changes: {inline(base_label)} → {inline(head_label)}", ""]
    items = _changed(diff)
    if not items and not diff.events:
        out.append("No prompt or retrieval config changed.")
    if diff.events:
        out.extend(f"- **{inline(event.kind)}** ({event.item} {inline(event.id)}): {inline(event.message, 400)}"
                   for event in diff.events)
        out.append("")
    for item in items:
        out.append(f"<details><summary>{item.kind} {inline(item.id)} ({_STATUS_WORDS[item.status]}): "
                   f"{inline(_where(item), 400)}</summary>")
        out.append("")
        out.extend(f"- {inline(line, 400)}" for line in _change_lines(item))
        for template in item.template_diffs:
            # The comment's one fence: controls and bidi overrides go, nothing inside can close it.
            out.append(block(template.unified.rstrip("\n"), max_chars=None, language="diff").rstrip("\n"))
        out.extend(["", "</details>", ""])
    return "\n".join(out).rstrip("\n") + "\n"
