"""PO311: what ``retrieval.query`` may name, each way it can be wrong (the fixture pair shows the typo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.cli import run_promptops
from helpers.lint import cli_env

RETRIEVAL = """\
id: support_kb
embedding: {model: openai/text-embedding-3-small}
chunking: {size: 512, overlap: 64}
retriever: {top_k: 8}
"""

PROMPT = """\
id: support.answer
model: {name: openai/gpt-4o-mini}
retrieval: {config: support_kb, into: passages, query: QUERY}
inputs:
  type: object
  properties:
    question: {type: string}
    topic: TOPIC
    passages: {type: array, items: {type: string}}
messages:
  - role: user
    content: "{% for p in passages %}{{ p }} {% endfor %}{{ question }} {{ topic }}"
"""


@pytest.mark.parametrize("query, topic, message", [
    ("passages", "{type: string}", "retrieval.query 'passages' is the retrieval.into input"),
    ("topic", "{type: integer}", "retrieval.query 'topic' is declared as integer, not a string to query with"),
    ("subject", "{type: string}", "retrieval.query 'subject' is not a declared input"),
    ("topic", "{type: string}", None),
    ("topic", "{type: [string, 'null']}", None),
    ("topic", "{description: free text}", None),
])
def test_po311_the_query_must_be_a_declared_string_input_other_than_into(query: str, topic: str,
                                                                         message: str | None,
                                                                         tmp_path: Path) -> None:
    (tmp_path / "kb.retrieval.yaml").write_text(RETRIEVAL)
    (tmp_path / "answer.prompt.yaml").write_text(PROMPT.replace("QUERY", query).replace("TOPIC", topic))
    done = run_promptops(["lint", "--strict", "--format", "json", "."], cwd=tmp_path, env=cli_env())
    found = [(f["code"], f["line"], f["message"]) for f in done.json()["findings"]]
    if message is None:
        assert (done.returncode, found) == (0, []), done.stdout + done.stderr
    else:
        assert [(code, line) for code, line, _ in found] == [("PO311", 3)], found
        assert found[0][2].startswith(message), found
