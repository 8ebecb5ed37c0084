"""PO204/PO205 and retrieval: a case of a prompt with `retrieval: {config, into}` may leave `into` out, since
the eval retrieves it; every other required input is still required, and the messages still render."""

from __future__ import annotations

from pathlib import Path

from promptops.lint import lint

PROMPT = """\
id: help.answer
model: {name: openai/gpt-4o-mini}
RETRIEVAL
inputs:
  type: object
  required: [question, passages]
  properties:
    question: {type: string}
    passages: {type: array, items: {type: string}}
messages:
  - role: user
    content: |
      {% for p in passages %}[{{ loop.index }}] {{ p | trim }}
      {% endfor %}Question: {{ question | upper }}
"""
KB = """\
id: kb
embedding: {model: openai/text-embedding-3-small, dimensions: 64}
chunking: {strategy: markdown, size: 200, overlap: 0}
retriever: {top_k: 3}
corpus: {include: ["../help/*.md"]}
"""
SUITE = """\
prompt: help.answer
cases:
  - id: retrieved
    vars: {question: "How long is the refund window?"}
  - id: no-question
    vars: {passages: ["Refunds within 30 days."]}
"""


def findings(tmp_path: Path, retrieval: str) -> list[tuple[int, str, str]]:
    files = {"promptops.yaml": "defaults: {model: openai/gpt-4o-mini}\n", "retrieval/kb.retrieval.yaml": KB,
             "help/refunds.md": "# Refunds\n\nAsk within 30 days.\n",
             "prompts/answer.prompt.yaml": PROMPT.replace("RETRIEVAL", retrieval), "evals/answer.eval.yaml": SUITE}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    report = lint([tmp_path / "evals/answer.eval.yaml"], cwd=tmp_path)
    return [(f.line, f.code, f.message) for f in report.findings]


def test_the_input_retrieval_fills_may_be_left_out_and_the_messages_still_render(tmp_path: Path) -> None:
    assert findings(tmp_path, "retrieval: {config: kb, into: passages}") == [
        (6, "PO204", "case 'no-question' lacks required input(s) question of prompt 'help.answer'")]


def test_without_retrieval_every_required_input_is_required(tmp_path: Path) -> None:
    assert [(line, code) for line, code, _ in findings(tmp_path, "")] == [(4, "PO204"), (6, "PO204")]
