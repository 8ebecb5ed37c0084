"""promptops.diff on real git repositories: two commits, each side loaded from git's objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.repo import git
from promptops.diff import (
    FieldChange,
    ItemDiff,
    SpecDiff,
    TemplateDiff,
    category_of,
    diff_workspaces,
    model_family,
    same_family,
)
from promptops.gitrefs import open_repo, resolve_refs, snapshot
from promptops.report.diff import to_json

PROMPT = """\
# Answers customer questions.
id: support.answer
description: Answer a customer question.
model:
  name: openai/gpt-4o-mini
  params: {temperature: 0.2, max_tokens: 400}
inputs:
  type: object
  required: [question]
  properties:
    question: {type: string}
messages:
  - role: system
    content: |
      You answer questions about Acme.
      Be brief.
  - role: user
    content: |
      Question: {{ question }}
output: {format: text}
"""

CLASSIFY = """\
id: support.classify
model: {name: openai/gpt-4o-mini}
messages:
  - {role: user, content: "Classify this ticket."}
"""

RETRIEVAL = """\
id: support_kb
embedding: {model: openai/text-embedding-3-small, dimensions: 1536}
chunking: {strategy: recursive, size: 512, overlap: 64, unit: tokens}
retriever: {top_k: 8}
index: {name: support-kb-v3, store: pgvector}
"""

ANSWER = "prompts/answer.prompt.yaml"
KB = "retrieval/support_kb.retrieval.yaml"


class Project:
    """A git repository with a promptops project at its root; the current directory while a test runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        git(root, "init", "-q", "-b", "main")
        self.commit({"promptops.yaml": "defaults: {model: openai/gpt-4o-mini}\n", ANSWER: PROMPT, KB: RETRIEVAL})

    def write(self, files: dict[str, str | None]) -> None:
        for name, text in files.items():
            path = self.root / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")

    def commit(self, files: dict[str, str | None]) -> None:
        self.write(files)
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", "change")

    def diff(self, head: str | None = "HEAD") -> SpecDiff:
        with open_repo(self.root) as repo:  # closing it stops its `git cat-file` processes
            base_ref, head_ref = resolve_refs(repo, base="HEAD~1", head=head)
            return diff_workspaces(snapshot(repo, base_ref, self.root), snapshot(repo, head_ref, self.root))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(tmp_path)  # display paths are relative to the current directory
    return Project(tmp_path)


def answer(diff: SpecDiff) -> ItemDiff:
    (item,) = [p for p in diff.prompts if p.id == "support.answer"]
    return item


def _commit_and_diff(project: Project, prompt: str) -> SpecDiff:
    project.commit({ANSWER: prompt})
    return project.diff()


def test_model_change_within_family_is_a_field_change_without_event(project: Project) -> None:
    project.commit({ANSWER: PROMPT.replace("openai/gpt-4o-mini", "openai/gpt-4o")})
    diff = project.diff()
    item = answer(diff)
    assert item.status == "modified"
    assert item.changes == (FieldChange("model.name", "model", "changed", "openai/gpt-4o-mini", "openai/gpt-4o"),)
    assert item.base_version != item.head_version
    assert item.template_diffs == ()
    assert diff.events == ()


def test_params_changes_are_categorised_as_params(project: Project) -> None:
    project.commit({ANSWER: PROMPT.replace("{temperature: 0.2, max_tokens: 400}", "{temperature: 0.7, top_p: 0.9}")})
    assert answer(project.diff()).changes == (
        FieldChange("model.params.max_tokens", "params", "removed", 400, None),
        FieldChange("model.params.temperature", "params", "changed", 0.2, 0.7),
        FieldChange("model.params.top_p", "params", "added", None, 0.9),
    )


def test_template_change_has_its_unified_diff(project: Project) -> None:
    project.commit({ANSWER: PROMPT.replace("      Be brief.\n", "      Be brief and polite.\n")})
    item = answer(project.diff())
    assert item.changes == (FieldChange(
        "messages[0].content", "messages", "changed",
        "You answer questions about Acme.\nBe brief.\n", "You answer questions about Acme.\nBe brief and polite.\n",
    ),)
    assert item.template_diffs == (TemplateDiff(0, "system", (
        f"--- a/{ANSWER} messages[0]\n"
        f"+++ b/{ANSWER} messages[0]\n"
        "@@ -1,2 +1,2 @@\n"
        " You answer questions about Acme.\n"
        "-Be brief.\n"
        "+Be brief and polite.\n"
    )),)


def test_added_message_and_lost_final_newline_show_in_template_diffs(project: Project) -> None:
    changed = PROMPT.replace("    content: |\n      Question:", "    content: |-\n      Question:")
    changed = changed.replace("output:", "  - role: assistant\n    content: Sure.\noutput:")
    item = answer(_commit_and_diff(project, changed))
    assert [c.path for c in item.changes] == ["messages[1].content", "messages[2]"]
    assert item.changes[1] == FieldChange("messages[2]", "messages", "added", None,
                                          {"role": "assistant", "content": "Sure."})
    user, assistant = item.template_diffs
    assert user.unified.endswith("-Question: {{ question }}\n+Question: {{ question }}\n\\ No newline at end of file\n")
    assert (assistant.message_index, assistant.role) == (2, "assistant")
    assert assistant.unified.endswith("@@ -0,0 +1 @@\n+Sure.\n\\ No newline at end of file\n")


def test_inputs_changes_are_categorised_as_inputs(project: Project) -> None:
    changed = PROMPT.replace("required: [question]", "required: [question, tone]")
    changed = changed.replace("    question: {type: string}\n",
                              "    question: {type: string}\n    tone: {enum: [formal, casual]}\n")
    item = answer(_commit_and_diff(project, changed))
    assert item.changes == (
        FieldChange("inputs.properties.tone", "inputs", "added", None, {"enum": ["formal", "casual"]}),
        FieldChange("inputs.required[1]", "inputs", "added", None, "tone"),
    )


REFORMATTED = """\
id: support.answer
# Same prompt, other comments, key order and YAML style.
output:
  format: text
messages:
  - content: "You answer questions about Acme.\\nBe brief.\\n"
    role: system
  - role: user
    content: |
      Question: {{ question }}
inputs:
  properties: {question: {type: string}}
  type: object
  required:
    - question
model:
  params:
    max_tokens: 400
    temperature: 0.2
  name: openai/gpt-4o-mini
description: Answer a customer question.
"""


def test_comments_key_order_and_layout_are_formatting_only(project: Project) -> None:
    project.commit({ANSWER: REFORMATTED})
    diff = project.diff()
    item = answer(diff)
    assert (item.status, item.formatting_only, item.changes, item.template_diffs) == ("unchanged", True, (), ())
    assert item.base_version == item.head_version
    (kb,) = diff.retrievals
    assert (kb.status, kb.formatting_only) == ("unchanged", False)  # not touched at all
    assert diff.events == ()


def test_working_tree_as_head(project: Project) -> None:
    project.write({ANSWER: REFORMATTED})
    project.commit({KB: RETRIEVAL.replace("top_k: 8", "top_k: 12")})  # HEAD~1 -> HEAD, then the work tree
    diff = project.diff(head=None)
    assert answer(diff).formatting_only
    assert diff.retrievals[0].changes == (FieldChange("retriever.top_k", "retrieval", "changed", 8, 12),)


def test_added_prompt(project: Project) -> None:
    project.commit({"prompts/classify.prompt.yaml": CLASSIFY})
    diff = project.diff()
    added = diff.prompts[1]
    assert [p.id for p in diff.prompts] == ["support.answer", "support.classify"]
    assert (added.status, added.base_path, added.head_path, added.base_version) == (
        "added", None, "prompts/classify.prompt.yaml", None)
    # A reviewer sees the new prompt in full: its settings, and its templates as all-new lines.
    assert added.head_version and added.changes == (
        FieldChange("model.name", "model", "added", None, "openai/gpt-4o-mini"),)
    [template] = added.template_diffs
    assert template.unified.splitlines()[:3] == [
        "--- /dev/null", "+++ b/prompts/classify.prompt.yaml messages[0]", "@@ -0,0 +1 @@"]
    assert "+Classify this ticket." in template.unified
    assert answer(diff).status == "unchanged" and diff.events == ()


def test_removed_prompt_is_an_event(project: Project) -> None:
    project.commit({ANSWER: None})
    diff = project.diff()
    item = answer(diff)
    assert (item.status, item.base_path, item.head_path, item.head_version) == ("removed", ANSWER, None, None)
    (event,) = diff.events
    assert (event.kind, event.item, event.id) == ("prompt-removed", "prompt", "support.answer")
    assert ANSWER in event.message


def test_renamed_file_keeps_its_id(project: Project) -> None:
    (project.root / "prompts/support").mkdir()
    git(project.root, "mv", ANSWER, "prompts/support/answer.prompt.yaml")
    project.commit({})
    diff = project.diff()
    item = answer(diff)
    assert (item.status, item.base_path, item.head_path) == ("renamed", ANSWER, "prompts/support/answer.prompt.yaml")
    assert item.base_version == item.head_version
    assert (item.changes, item.formatting_only, diff.events) == ((), False, ())


def test_renamed_and_modified(project: Project) -> None:
    moved = "prompts/answer_v2.prompt.yaml"
    project.commit({ANSWER: None, moved: PROMPT.replace("temperature: 0.2", "temperature: 0")})
    item = answer(project.diff())
    assert (item.status, item.head_path) == ("renamed", moved)
    assert item.changes == (FieldChange("model.params.temperature", "params", "changed", 0.2, 0),)


def test_embedding_change_with_same_index_name_needs_reindex(project: Project) -> None:
    project.commit({KB: RETRIEVAL.replace("text-embedding-3-small, dimensions: 1536",
                                          "text-embedding-3-large, dimensions: 3072")})
    diff = project.diff()
    (kb,) = diff.retrievals
    assert [(c.path, c.category) for c in kb.changes] == [("embedding.dimensions", "retrieval"),
                                                          ("embedding.model", "retrieval")]
    (event,) = diff.events
    assert (event.kind, event.item, event.id) == ("reindex-needed", "retrieval", "support_kb")
    assert event.message == (
        "embedding model changed from openai/text-embedding-3-small to openai/text-embedding-3-large; "
        "embedding dimensions changed from 1536 to 3072 "
        "but index name support-kb-v3 did not: re-index and rename the index"
    )


def test_embedding_change_with_renamed_index_is_no_event(project: Project) -> None:
    changed = RETRIEVAL.replace("text-embedding-3-small", "text-embedding-3-large").replace("kb-v3", "kb-v4")
    project.commit({KB: changed})
    diff = project.diff()
    assert [c.path for c in diff.retrievals[0].changes] == ["embedding.model", "index.name"]
    assert diff.events == ()


def test_model_family_change_is_an_event(project: Project) -> None:
    project.commit({ANSWER: PROMPT.replace("openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet-20241022")})
    (event,) = project.diff().events
    assert (event.kind, event.item, event.id) == ("model-family-changed", "prompt", "support.answer")
    assert event.message.startswith("model changed from openai/gpt-4o-mini to anthropic/claude-3-5-sonnet-20241022, "
                                    "another model family (openai/gpt-4o -> anthropic/claude-3.5)")


def test_fine_tune_of_the_same_base_is_no_event(project: Project) -> None:
    tuned = "openai/ft:gpt-4o-mini-2024-07-18:acme:answers:B7x2kQ9p"
    project.commit({ANSWER: PROMPT.replace("openai/gpt-4o-mini", f'"{tuned}"')})
    diff = project.diff()
    assert answer(diff).changes[0].new == tuned
    assert diff.events == ()


@pytest.mark.parametrize(("old", "new", "same"), [
    ("openai/gpt-4o", "openai/gpt-4o-mini", True),  # a size within the family
    ("openai/gpt-4o-2024-08-06", "openai/gpt-4o", True),  # a dated snapshot
    ("openai/gpt-4o-mini", "openai/ft:gpt-4o-mini-2024-07-18:acme:x:abc123", True),
    ("anthropic/claude-3-5-sonnet-20241022", "anthropic/claude-3-5-haiku-latest", True),
    ("gpt-4o", "openai/gpt-4o-mini", True),  # no provider prefix: family alone
    ("openai/gpt-4o", "openai/o3", False),
    ("openai/gpt-4o", "openai/gpt-4.1", False),  # another generation
    ("openai/gpt-4o", "anthropic/claude-sonnet-4-5", False),
    ("anthropic/claude-3-5-sonnet-20241022", "gemini/gemini-2.5-pro", False),
    ("openai/gpt-4o", "azure/gpt-4o", False),  # another provider
])
def test_model_families(old: str, new: str, same: bool) -> None:
    assert same_family(old, new) is same


@pytest.mark.parametrize(("name", "family"), [
    ("openai/ft:gpt-4o-mini-2024-07-18:acme:ticket-summary:B7x2kQ9p", ("openai", "gpt-4o")),
    ("anthropic/claude-sonnet-4-5-20250929", ("anthropic", "claude-4.5")),
    ("vertex_ai/claude-3-5-sonnet@20240620", ("vertex_ai", "claude-3.5")),
    ("bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", ("bedrock", "claude-3.5")),
    ("openrouter/anthropic/claude-3.5-sonnet", ("openrouter", "claude-3.5")),
    ("huggingface/meta-llama/Llama-3.1-8B-Instruct", ("huggingface", "llama-3.1")),
    ("gemini/gemini-1.5-pro-002", ("gemini", "gemini-1.5")),
    ("o1-preview", (None, "o1")),
])
def test_model_family_names(name: str, family: tuple[str | None, str]) -> None:
    assert model_family(name) == family


def test_changed_id_in_the_same_file_is_an_event(project: Project) -> None:
    project.commit({ANSWER: PROMPT.replace("id: support.answer", "id: support.reply")})
    diff = project.diff()
    assert [(p.id, p.status) for p in diff.prompts] == [("support.answer", "removed"), ("support.reply", "added")]
    assert [(e.kind, e.id) for e in diff.events] == [("prompt-removed", "support.answer"),
                                                     ("id-changed", "support.reply")]
    assert "changed its id from support.answer to support.reply" in diff.events[1].message


def test_a_file_that_no_longer_loads_is_not_reported_removed(project: Project) -> None:
    project.commit({ANSWER: PROMPT.replace("model:\n", "model: [\n")})
    diff = project.diff()
    item = answer(diff)
    assert (item.status, item.base_path, item.head_path) == ("unloadable", ANSWER, ANSWER)
    assert [e.kind for e in diff.events] == ["unloadable"]


def test_to_json_is_plain_and_deterministic(project: Project) -> None:
    project.commit({
        ANSWER: PROMPT.replace("openai/gpt-4o-mini", "openai/o3").replace("Be brief.", "Be short."),
        KB: RETRIEVAL.replace("text-embedding-3-small", "text-embedding-3-large"),
        "prompts/classify.prompt.yaml": CLASSIFY,
    })
    first, second = to_json(project.diff()), to_json(project.diff())
    assert first == second
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert [e["kind"] for e in first["events"]] == ["model-family-changed", "reindex-needed"]
    assert first["prompts"][0] == {
        "kind": "prompt",
        "id": "support.answer",
        "status": "modified",
        "base_path": ANSWER,
        "head_path": ANSWER,
        "base_version": first["prompts"][0]["base_version"],
        "head_version": first["prompts"][0]["head_version"],
        "formatting_only": False,
        "changes": [
            {"path": "model.name", "category": "model", "kind": "changed", "old": "openai/gpt-4o-mini",
             "new": "openai/o3"},
            {"path": "messages[0].content", "category": "messages", "kind": "changed",
             "old": "You answer questions about Acme.\nBe brief.\n",
             "new": "You answer questions about Acme.\nBe short.\n"},
        ],
        "template_diffs": [{"message_index": 0, "role": "system",
                            "unified": answer(project.diff()).template_diffs[0].unified}],
    }


@pytest.mark.parametrize(("path", "category"), [
    (("model", "name"), "model"),
    (("model", "params", "temperature"), "params"),
    (("model", "params"), "params"),
    (("retrieval", "into"), "retrieval"),
    (("index", "name"), "retrieval"),
    (("output", "schema", "required", 0), "output"),
    (("budget", "max_input_tokens"), "budget"),
    (("owners", 0), "metadata"),
    (("description",), "metadata"),
])
def test_categories(path: tuple, category: str) -> None:
    assert category_of(path) == category
