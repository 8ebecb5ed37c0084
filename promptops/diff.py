"""What changed in prompts and retrieval configs between two workspaces, field by field.

Items are matched by id, not by file: a file moved or renamed keeps its id and
its history (status "renamed", with its content changes if it has any). Content
is compared as parsed data, so an edit of comments, key order or YAML layout is
"unchanged" with ``formatting_only`` set. Events flag changes that need action
beyond reading the diff: an index to rebuild, a model from another family, an
id that callers can no longer load.

Model families (``model_family``): a family is the provider (the litellm prefix,
``openai`` in ``openai/gpt-4o``) and the model's generation with size, tier,
date and revision left out. gpt-4o and gpt-4o-mini-2024-07-18 are both
openai/gpt-4o (a size change, no event); gpt-4o -> gpt-4.1, gpt-4o -> o3,
claude-3-5-sonnet -> claude-sonnet-4, and any change of provider (openai ->
azure included: other limits, filters and deployments) are family changes. A
fine-tune (``ft:<base>:<org>:<name>:<id>``) belongs to its base model's family.
A name without a provider prefix is compared on its family alone.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Mapping
from typing import Any

from promptops.config import Workspace
from promptops.findings import Finding, dotted
from promptops.model.diff import (
    Category,
    ChangeKind,
    Event,
    FieldChange,
    ItemDiff,
    ItemKind,
    SpecDiff,
    Status,
    TemplateDiff,
)
from promptops.specs import PromptSpec, RetrievalSpec

DiffedSpec = PromptSpec | RetrievalSpec

# Also the order in which an item's changes are listed: what a reviewer weighs first.
CATEGORIES: tuple[Category, ...] = (
    "model", "params", "inputs", "retrieval", "messages", "output", "budget", "metadata")

_CATEGORY_OF_KEY: dict[str, Category] = {
    "model": "model",
    "inputs": "inputs",
    "output": "output",
    "messages": "messages",
    "budget": "budget",
    "retrieval": "retrieval",
    "embedding": "retrieval",
    "chunking": "retrieval",
    "retriever": "retrieval",
    "reranker": "retrieval",
    "index": "retrieval",
}

_CHANGE_KINDS: dict[str, ChangeKind] = {
    "values_changed": "changed",
    "type_changes": "changed",  # 1 -> 1.0 or 1 -> true: the content hash changes too
    "dictionary_item_added": "added",
    "iterable_item_added": "added",
    "dictionary_item_removed": "removed",
    "iterable_item_removed": "removed",
}

_NO_NEWLINE = "\\ No newline at end of file\n"


def diff_workspaces(base: Workspace, head: Workspace) -> SpecDiff:
    prompts = _diff_items("prompt", base.prompts, head.prompts, head.problems)
    retrievals = _diff_items("retrieval", base.retrievals, head.retrievals, head.problems)
    events = [
        *_item_events(prompts, base.prompts, head.prompts),
        *_item_events(retrievals, base.retrievals, head.retrievals),
        *_id_changes("prompt", base.prompts, head.prompts),
        *_id_changes("retrieval", base.retrievals, head.retrievals),
    ]
    order = {"prompt": 0, "retrieval": 1}
    events.sort(key=lambda e: (order[e.item], e.id, e.kind, e.message))
    return SpecDiff(prompts=tuple(prompts), retrievals=tuple(retrievals), events=tuple(events))


def _diff_items(
    kind: ItemKind, base: Mapping[str, DiffedSpec], head: Mapping[str, DiffedSpec], head_problems: list[Finding]
) -> list[ItemDiff]:
    broken = {finding.path for finding in head_problems}
    return [_diff_item(kind, ident, base.get(ident), head.get(ident), broken) for ident in sorted({*base, *head})]


def _diff_item(kind: ItemKind, ident: str, old: DiffedSpec | None, new: DiffedSpec | None,
               broken: set[str]) -> ItemDiff:
    if new is None:
        assert old is not None
        # A file that fails to load at head is not a removal; lint reports why it fails.
        status: Status = "unloadable" if old.source.display in broken else "removed"
        head_path = old.source.display if status == "unloadable" else None
        return ItemDiff(kind, ident, status, old.source.display, head_path, old.version, None)
    if old is None:  # a reviewer sees a new prompt in full: its settings, and its templates as all-new lines
        templates = _template_diffs(None, new) if isinstance(new, PromptSpec) else ()
        return ItemDiff(kind, ident, "added", None, new.source.display, None, new.version,
                        changes=_added_fields(new.raw, skip_messages=bool(templates)), template_diffs=templates)
    # Equal content versions (cached hashes of the parsed files): nothing to diff, the common case.
    changes = field_changes(old.raw, new.raw) if old.version != new.version else ()
    moved = _real(old) != _real(new)
    status = "renamed" if moved else ("modified" if changes else "unchanged")
    templates = _template_diffs(old, new) if isinstance(old, PromptSpec) and isinstance(new, PromptSpec) else ()
    return ItemDiff(
        kind, ident, status, old.source.display, new.source.display, old.version, new.version,
        changes=changes,
        template_diffs=templates,
        formatting_only=not changes and old.source.text != new.source.text,
    )


def _added_fields(raw: Mapping[str, Any], *, skip_messages: bool) -> tuple[FieldChange, ...]:
    """Every leaf of a new item as an addition, in the order changes are listed (messages shown as diffs)."""
    found: list[tuple[tuple[Any, ...], FieldChange]] = []

    def walk(parts: tuple[Any, ...], value: Any) -> None:
        children = list(value.items() if isinstance(value, Mapping)
                        else enumerate(value) if isinstance(value, list) else ())
        if not children:
            found.append((parts, FieldChange(dotted(parts), category_of(parts), "added", None, copy.deepcopy(value))))
        for key, child in children:
            walk((*parts, key), child)

    for key, value in raw.items():
        if not (skip_messages and key == "messages") and key not in ("id", "$schema"):  # the id heads the item
            walk((key,), value)
    found.sort(key=lambda pair: (CATEGORIES.index(pair[1].category), _path_key(pair[0])))
    return tuple(change for _, change in found)


def _real(spec: DiffedSpec) -> str:
    # Base and head paths may reach the same file through different spellings (symlinked folders).
    return os.path.realpath(spec.source.path)


def field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """Every leaf that differs between two parsed specs; key order never counts, list order does."""
    from deepdiff import DeepDiff  # here, not at the top: an eval run never needs it (a third of a second)

    # threshold_to_diff_deeper=0: never collapse a mapping whose keys mostly changed into one change.
    tree = DeepDiff(dict(old), dict(new), ignore_order=False, view="tree", threshold_to_diff_deeper=0)
    found = []
    for report, levels in tree.items():
        kind = _CHANGE_KINDS.get(report, "changed")
        for level in levels:
            parts = tuple(level.path(output_format="list"))
            found.append((parts, FieldChange(
                path=dotted(parts),
                category=category_of(parts),
                kind=kind,
                old=None if kind == "added" else copy.deepcopy(level.t1),
                new=None if kind == "removed" else copy.deepcopy(level.t2),
            )))
    found.sort(key=lambda pair: (CATEGORIES.index(pair[1].category), _path_key(pair[0])))
    return tuple(change for _, change in found)


def category_of(path: tuple[Any, ...]) -> Category:
    top = path[0] if path else ""
    if top == "model" and len(path) > 1 and path[1] == "params":
        return "params"
    return _CATEGORY_OF_KEY.get(str(top), "metadata")  # description, owners, tags, $schema


def _path_key(path: tuple[Any, ...]) -> tuple[tuple[int, int, str], ...]:
    # Numeric order for list indexes (messages[2] before messages[10]).
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in path)


def _template_diffs(old: PromptSpec | None, new: PromptSpec) -> tuple[TemplateDiff, ...]:
    """Message templates paired by position, as the field changes pair them (``old`` None: a new prompt)."""
    diffs = []
    old_messages = old.messages if old is not None else []
    for index in range(max(len(old_messages), len(new.messages))):
        before = old_messages[index] if index < len(old_messages) else None
        after = new.messages[index] if index < len(new.messages) else None
        old_text = before.content if before else ""
        new_text = after.content if after else ""
        if old_text == new_text:
            continue
        unified = difflib.unified_diff(
            _lines(old_text), _lines(new_text),
            "/dev/null" if old is None else f"a/{old.source.display} messages[{index}]",
            f"b/{new.source.display} messages[{index}]",
        )
        role = (after or before).role  # type: ignore[union-attr]
        diffs.append(TemplateDiff(message_index=index, role=role, unified="".join(unified)))
    return tuple(diffs)


def _lines(text: str) -> list[str]:
    # Split on \n only, and mark a missing final newline as git does, so that `|` -> `|-` shows.
    if not text:
        return []
    lines = [line + "\n" for line in text.split("\n")]
    if text.endswith("\n"):
        lines.pop()
    else:
        lines[-1] += _NO_NEWLINE
    return lines


def _item_events(items: list[ItemDiff], base: Mapping[str, DiffedSpec], head: Mapping[str, DiffedSpec]) -> list[Event]:
    events = []
    for item in items:
        old, new = base.get(item.id), head.get(item.id)
        if item.status == "removed":
            events.append(_removed(item))
        elif item.status == "unloadable":
            message = f"{item.base_path} does not load at head (see `promptops lint`); its changes are not shown"
            events.append(Event("unloadable", item.kind, item.id, message))
        elif isinstance(old, PromptSpec) and isinstance(new, PromptSpec):
            events.extend(_family_event(old, new))
        elif isinstance(old, RetrievalSpec) and isinstance(new, RetrievalSpec):
            events.extend(_reindex_event(old, new))
    return events


def _removed(item: ItemDiff) -> Event:
    users = ("code and environments that load it" if item.kind == "prompt"
             else "prompts that name it in retrieval.config")
    message = f"{item.kind} {item.id} was removed (it was in {item.base_path}); {users} by id will fail"
    return Event(f"{item.kind}-removed", item.kind, item.id, message)


def _family_event(old: PromptSpec, new: PromptSpec) -> list[Event]:
    if same_family(old.model, new.model):
        return []
    before, after = _family_name(old.model), _family_name(new.model)
    message = (f"model changed from {old.model} to {new.model}, another model family ({before} -> {after}): "
               f"prompts rarely carry over unchanged, so compare the eval results before merging")
    return [Event("model-family-changed", "prompt", new.id, message)]


def _reindex_event(old: RetrievalSpec, new: RetrievalSpec) -> list[Event]:
    """The index holds vectors of the old embedding; queries with the new one would search it wrongly."""
    reasons = [
        f"{label} changed from {_show(before)} to {_show(after)}"
        for label, before, after in (
            ("embedding model", old.embedding_model, new.embedding_model),
            ("embedding dimensions", _dimensions(old), _dimensions(new)),
        )
        if before != after
    ]
    if not reasons or old.index_name != new.index_name:
        return []
    if new.index_name is None:
        tail = "and no index name is declared: re-index, into a newly named index"
    else:
        tail = f"but index name {new.index_name} did not: re-index and rename the index"
    return [Event("reindex-needed", "retrieval", new.id, f"{'; '.join(reasons)} {tail}")]


def _dimensions(spec: RetrievalSpec) -> Any:
    embedding = spec.raw.get("embedding")
    return embedding.get("dimensions") if isinstance(embedding, dict) else None


def _show(value: Any) -> str:
    return "(none)" if value is None else str(value)


def _id_changes(kind: ItemKind, base: Mapping[str, DiffedSpec], head: Mapping[str, DiffedSpec]) -> list[Event]:
    """A file that kept its place but changed its id: a new item, and the old id is gone."""
    removed = {_real(spec): spec for ident, spec in base.items() if ident not in head}
    events = []
    for ident in sorted(set(head) - set(base)):
        old = removed.get(_real(head[ident]))
        if old is not None:
            message = (f"{head[ident].source.display} changed its id from {old.id} to {ident}: that makes a new "
                       f"{kind}, and whatever names {old.id} (usage, eval suites, environments) loses it")
            events.append(Event("id-changed", kind, ident, message))
    return events


# Words in a model name that give a size, tier, variant or channel, not a generation.
_NOT_FAMILY_WORDS = frozenset({
    "mini", "nano", "micro", "tiny", "small", "medium", "large", "xl", "plus", "turbo", "pro", "flash", "lite",
    "haiku", "sonnet", "opus", "instruct", "chat", "latest", "preview", "exp", "experimental",
})
# Dates, revisions (0613, 001), parameter counts (8b, 8x7b, a22b), context sizes (16k), API versions (v1:0).
_NOT_FAMILY_TOKEN = re.compile(r"\d{3,}|(?:\d+x)?\d+(?:\.\d+)?[bmk]|a\d+b|v\d+:\d+")
_DATE = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})(?=-|$)")


def model_family(name: str) -> tuple[str | None, str]:
    """(provider or None, family) of a litellm model name; see the module docstring for the rules."""
    route, _, model = name.strip().lower().rpartition("/")
    provider = route.split("/")[0] or None  # openrouter/anthropic/claude-...: the route is the provider
    if model.startswith("ft:"):
        model = model.split(":")[1]  # ft:gpt-4o-mini-2024-07-18:acme:name:id
    model = _DATE.sub("", model.split("@")[0])  # claude-3-5-sonnet@20240620 (Vertex AI)
    model = re.sub(r"^[a-z]+\.(?=[a-z])", "", model)  # anthropic.claude-3-haiku (Bedrock)
    kept = [t for t in model.split("-") if t and t not in _NOT_FAMILY_WORDS and not _NOT_FAMILY_TOKEN.fullmatch(t)]
    return provider, "-".join(_join_versions(kept)) or model


def _join_versions(tokens: list[str]) -> list[str]:
    # claude-3-5 and claude-sonnet-4-5 spell versions 3.5 and 4.5 with dashes.
    joined: list[str] = []
    for token in tokens:
        if token.isdigit() and len(token) == 1 and joined and re.fullmatch(r"\d(\.\d)*", joined[-1]):
            joined[-1] += "." + token
        else:
            joined.append(token)
    return joined


def same_family(old: str, new: str) -> bool:
    (old_provider, old_family), (new_provider, new_family) = model_family(old), model_family(new)
    providers_agree = old_provider is None or new_provider is None or old_provider == new_provider
    return providers_agree and old_family == new_family


def _family_name(name: str) -> str:
    provider, family = model_family(name)
    return f"{provider}/{family}" if provider else family
