"""The cost estimate's figures stay what they were before the commit hook was made fast.

tests/fixtures/cost_figures.json holds `promptops cost --format json` of the repository below, as
the code before that work (commit 1018bfb) printed it: at the staged changes (the hook) and in the
working tree, every figure of every prompt (tokens, median over an even number of cases, p95,
retrieval chunks, prices from the map and from pricing:, unknown prices, monthly totals, budgets).
The same commands must print the same documents now, with promptops' tokenizer cache cold and warm.

To regenerate after a deliberate change of a figure:
`PYTHONPATH=tests python tests/estimate/test_cost_figures.py > tests/fixtures/cost_figures.json`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from helpers.cli import run_promptops_process
from helpers.repo import FIXTURES, git, git_env

EXPECTED = FIXTURES / "cost_figures.json"

CONFIG = """\
usage:
  support.answer: {calls_per_day: 20000}
  support.classify: {calls_per_day: 35000}
  support.claude: {calls_per_day: 1200}
  support.custom: {calls_per_day: 700}
  support.house: {calls_per_day: 10}
  support.greet: {calls_per_day: 300}
pricing:
  openai/acme-ft-1: {input: 0.60, output: 2.40}
"""
KB = """\
id: kb
embedding: {model: openai/text-embedding-3-small}
chunking: {size: 400, overlap: 40}
retriever: {top_k: 5}
reranker: {model: cohere/rerank-v3.5, top_n: 3}
index: {name: kb-v1}
"""
ANSWER = """\
id: support.answer
model: {name: openai/gpt-4o-mini, params: {temperature: 0.2, max_tokens: 400}}
retrieval: {config: kb, into: passages}
inputs:
  type: object
  required: [question, passages]
  properties: {question: {type: string}, passages: {type: array, items: {type: string}}}
messages:
  - role: system
    content: |
      You answer questions about Acme's product using only the passages given.
      If the passages do not contain the answer, say you don't know.
  - role: user
    content: |
      Passages:
      {% for p in passages %}[{{ loop.index }}] {{ p }}
      {% endfor %}
      Question: {{ question }}
budget: {max_input_tokens: 6000, max_cost_per_call_usd: 0.002}
"""
ANSWER_SUITE = """\
prompt: support.answer
dataset: data/answer.jsonl
cases:
  - {id: refund, vars: {question: "How long do I have to ask for a refund?", passages: []}}
  - {id: seats, vars: {question: "Can I add seats in the middle of a billing period?", passages: []}}
"""
ANSWER_ROWS = [
    {"id": "export", "vars": {"question": "How do I export my projects to CSV?", "passages": []}},
    {"id": "sso", "vars": {"question": "Does the Business plan include single sign-on with Okta?", "passages": []}},
    {"id": "tax", "vars": {"question": "Why was VAT added?", "passages": []}},
    {"id": "unicode", "vars": {"question": "Où est ma facture ? 請求書はどこ？ 🙂", "passages": []}},
]
CLASSIFY = """\
id: support.classify
model: {name: openai/gpt-4o-mini, params: {max_tokens: 20}}
inputs: {type: object, required: [ticket], properties: {ticket: {type: string}}}
messages:
  - {role: system, content: "Classify the ticket as billing, bug, question or other. One word."}
  - {role: user, content: "{{ ticket }}"}
"""
CLASSIFY_SUITE = "prompt: support.classify\ndataset: data/classify.csv\n"
CLASSIFY_CSV = ("id,ticket\n" + "\n".join(f"t{i},\"{text}\"" for i, text in enumerate([
    "I was charged twice this month", "The export button does nothing", "How do I invite a colleague?",
    "Cancel my account now", "Login page shows error 500 since this morning, please help"])) + "\n")
SUMMARIZE = """\
id: support.summarize
model: {name: openai/gpt-4, params: {max_tokens: 150}}
inputs: {type: object, required: [thread], properties: {thread: {type: string, maxLength: 8000}}}
messages: [{role: user, content: "Summarise this support thread in three bullet points:\\n{{ thread }}"}]
"""
CLAUDE = """\
id: support.claude
model: {name: anthropic/claude-sonnet-4-5, params: {max_tokens: 300}}
inputs: {type: object, required: [draft], properties: {draft: {type: string}}}
messages: [{role: user, content: "Polish this reply, keep it short: {{ draft }}"}]
"""
CUSTOM = """\
id: support.custom
model: {name: openai/acme-ft-1, params: {max_tokens: 64}}
messages: [{role: user, content: "Say hello to the customer."}]
budget: {max_cost_per_call_usd: 0.0000001}
"""
HOUSE = """\
id: support.house
model: {name: acme/house-model-7, params: {max_tokens: 64}}
messages: [{role: user, content: "Say hello."}]
"""
GREET = """\
id: support.greet
model: {name: openai/gpt-4o, params: {max_tokens: 60}}
inputs: {type: object, required: [name], properties: {name: {type: string}}}
messages: [{role: user, content: "Greet {{ name }} warmly, in one sentence."}]
"""


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def build(root: Path) -> None:
    """A committed base, then changes: some staged (what the hook sees), one more in the working tree only."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    rows = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ANSWER_ROWS)
    _write(root, {
        "promptops.yaml": CONFIG, "retrieval/kb.retrieval.yaml": KB, "prompts/answer.prompt.yaml": ANSWER,
        "evals/answer.eval.yaml": ANSWER_SUITE, "evals/data/answer.jsonl": rows,
        "prompts/classify.prompt.yaml": CLASSIFY, "evals/classify.eval.yaml": CLASSIFY_SUITE,
        "evals/data/classify.csv": CLASSIFY_CSV, "prompts/summarize.prompt.yaml": SUMMARIZE,
        "prompts/claude.prompt.yaml": CLAUDE, "prompts/custom.prompt.yaml": CUSTOM, "prompts/house.prompt.yaml": HOUSE,
    })
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    more = rows + json.dumps({"id": "plans", "vars": {"question": "Which plan has audit logs?", "passages": []}}) + "\n"
    _write(root, {
        "prompts/answer.prompt.yaml": ANSWER.replace("using only the passages given.",
                                                     "using only the passages given. Cite them like [1]."),
        "retrieval/kb.retrieval.yaml": KB.replace("top_k: 5", "top_k: 8").replace("top_n: 3", "top_n: 4"),
        "evals/data/answer.jsonl": more,
        "prompts/classify.prompt.yaml": CLASSIFY.replace("openai/gpt-4o-mini", "openai/gpt-4o"),
        "prompts/greet.prompt.yaml": GREET,
    })
    (root / "prompts" / "summarize.prompt.yaml").unlink()
    git(root, "add", "-A")
    _write(root, {"prompts/claude.prompt.yaml": CLAUDE.replace("keep it short", "keep it short and kind")})


def documents(root: Path, cache: Path) -> dict[str, Any]:
    env = git_env(PROMPTOPS_CACHE_DIR=str(cache))
    result = {}
    for name, args in (("staged", ["--staged", "--warn"]), ("working_tree", ["--base", "HEAD", "--warn"])):
        done = run_promptops_process(["cost", "--format", "json", *args], cwd=root, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        result[name] = json.loads(done.stdout)
    return result


def test_the_figures_are_what_they_were(tmp_path: Path) -> None:
    build(tmp_path / "repo")
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    cold = documents(tmp_path / "repo", tmp_path / "cache")
    assert any(path.name.startswith("tiktoken-") for path in (tmp_path / "cache").iterdir())
    warm = documents(tmp_path / "repo", tmp_path / "cache")
    assert cold == expected
    assert warm == expected


def test_the_repository_exercises_every_kind_of_figure() -> None:
    """What the expected documents must hold for the comparison above to mean anything."""
    staged = json.loads(EXPECTED.read_text(encoding="utf-8"))["staged"]
    statuses = {p["id"]: p["status"] for p in staged["prompts"]}
    assert statuses == {"support.answer": "changed", "support.classify": "changed", "support.claude": "unchanged",
                        "support.custom": "unchanged", "support.greet": "added", "support.house": "unchanged",
                        "support.summarize": "removed"}
    answer = next(p for p in staged["prompts"] if p["id"] == "support.answer")
    assert answer["head"]["input_samples"] == 7 and answer["base"]["input_samples"] == 6  # an even median too
    assert answer["head"]["retrieval_tokens"] == 4 * 400 and answer["base"]["retrieval_tokens"] == 3 * 400
    methods = {p["head"]["token_method"]["encoding"] for p in staged["prompts"] if p["head"]}
    assert methods == {"o200k_base", "cl100k_base"}
    assert staged["totals"]["unknown"] == ["support.house"]
    assert [f["code"] for f in staged["findings"]] == ["PO411"]


if __name__ == "__main__":  # prints the expected documents, from whatever promptops this interpreter imports
    with tempfile.TemporaryDirectory() as folder:
        build(Path(folder) / "repo")
        print(json.dumps(documents(Path(folder) / "repo", Path(folder) / "cache"), indent=2, sort_keys=True,
                         ensure_ascii=False))
