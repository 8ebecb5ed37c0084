"""Four canonical checks, built as real git repositories and run through the real check stage.

Each check starts from one base commit (a geography prompt with its suite, a retrieval-backed
answer prompt with its suite, and a notes prompt no suite tests) and commits one change on a
branch: a regression, a cost-only change, a retrieval-config change, and a clean pass. The
evals go through litellm to the project's stub server. ``render_all`` renders a check the ways
a user sees it; ``normalised`` neutralises what truly varies between runs (the temporary folder,
commit hashes, latencies timed in this run), so that the rest can be compared byte for byte.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.repo import TESTS, git
from promptops.ci import CheckOptions, CheckReport, run_check
from promptops.evals.execute import EvalOptions
from promptops.github import body_limit
from promptops.publish import COMMENT_KEY
from promptops.report import check, cost, diff, evals
from promptops.testing import Rule, StubServer

GOLDEN = TESTS / "golden"
UPDATE = os.environ.get("PROMPTOPS_UPDATE_GOLDEN") == "1"

COUNTRIES = {"France": "Paris", "Italy": "Rome", "Japan": "Tokyo", "Peru": "Lima"}
CONFIG = """\
usage:
  geo.capital: {calls_per_day: 1000}
  kb.answer: {calls_per_day: 500}
  notes.title: {calls_per_day: 200}
eval: {concurrency: 2}
gates: {max_cost_increase_pct: 25}
"""
GEO = """\
id: geo.capital
model: {name: MODEL, params: {temperature: 0, max_tokens: 20}}
inputs: {type: object, required: [country], properties: {country: {type: string}}}
messages:
  - {role: system, content: "SYSTEM"}
  - {role: user, content: "What is the capital of {{ country }}?"}
"""
GEO_SUITE = "prompt: geo.capital\ngates: {max_pass_rate_drop: 0.05}\ncases:\n" + "".join(
    f"  - {{id: {country.lower()}, vars: {{country: {country}}}, expected: {city}, "
    "assert: [{type: contains, value: '{{ expected }}'}]}\n" for country, city in COUNTRIES.items())
KB = """\
id: kb
embedding: {model: openai/text-embedding-3-small, dimensions: 1536}
chunking: {strategy: recursive, size: SIZE, overlap: 32, unit: tokens}
retriever: {top_k: TOP_K, min_score: 0.25}
index: {name: kb-v1}
"""
ANSWER = """\
id: kb.answer
model: {name: openai/gpt-4o-mini, params: {temperature: 0, max_tokens: 60}}
retrieval: {config: kb, into: passages}
inputs:
  type: object
  required: [question, passages]
  properties:
    question: {type: string}
    passages: {type: array, items: {type: string}}
messages:
  - {role: system, content: "Answer from the passages only."}
  - role: user
    content: |
      {% for p in passages %}[{{ loop.index }}] {{ p }}
      {% endfor %}
      Question: {{ question }}
"""
ANSWER_SUITE = """\
prompt: kb.answer
cases:
  - {id: refunds, vars: {question: "How long is the refund window?", passages: ["Refunds within 30 days."]}, assert: [{type: contains, value: "30 days"}]}
  - {id: seats, vars: {question: "How many seats does Pro have?", passages: ["Pro has 10 seats."]}, assert: [{type: contains, value: "10 seats"}]}
  - {id: weather, vars: {question: "What's the weather?", passages: []}, assert: [{type: refusal}]}
"""
NOTES = """\
id: notes.title
model: {name: openai/gpt-4o-mini, params: {max_tokens: 30}}
inputs: {type: object, required: [note], properties: {note: {type: string}}}
messages:
  - {role: system, content: "STYLE"}
  - {role: user, content: "{{ note }}"}
"""
BASE_FILES = {
    "promptops.yaml": CONFIG,
    "prompts/geo.prompt.yaml": GEO.replace("MODEL", "openai/gpt-4o-mini").replace("SYSTEM", "Answer with the city."),
    "evals/geo.eval.yaml": GEO_SUITE,
    "retrieval/kb.retrieval.yaml": KB.replace("SIZE", "200").replace("TOP_K", "3"),
    "prompts/answer.prompt.yaml": ANSWER,
    "evals/answer.eval.yaml": ANSWER_SUITE,
    "prompts/notes.prompt.yaml": NOTES.replace("STYLE", "Write a short title for the note."),
}


@dataclass(frozen=True)
class Case:
    name: str
    message: str
    edits: dict[str, Callable[[str], str]]  # file: its new text from its base text


CASES = (
    Case("regression", "Answer rudely, and declare an input no message uses (a lint warning)", {
        "prompts/geo.prompt.yaml": lambda text: text.replace("Answer with the city.", "Answer rudely.").replace(
            "properties: {country: {type: string}}", "properties: {country: {type: string}, tone: {type: string}}"),
    }),
    Case("cost-only", "Move the geography prompt to a bigger model", {
        "prompts/geo.prompt.yaml": lambda text: text.replace("openai/gpt-4o-mini", "openai/gpt-4o"),
    }),
    Case("retrieval", "Retrieve more and longer chunks", {
        "retrieval/kb.retrieval.yaml": lambda text: text.replace("size: 200", "size: 300").replace("top_k: 3",
                                                                                                   "top_k: 5"),
    }),
    Case("clean-pass", "Tighter wording", {
        "prompts/geo.prompt.yaml": lambda text: text.replace("Answer with the city.", "Answer with the city only."),
        "prompts/notes.prompt.yaml": lambda text: text.replace("a short title", "a title"),
    }),
)


def stub_rules() -> list[Rule]:
    """Right answers, except that a rude system message gets no capital, and slowly: the regression's
    latency rises well beyond noise, so the verdict never hangs on this machine's timing."""
    rules = [Rule(system="rudely", match="capital", reply="No idea.", latency_ms=150)]
    rules += [Rule(match=country, reply=city) for country, city in COUNTRIES.items()]
    rules += [Rule(match="refund", reply="Refunds are accepted within 30 days [1]."),
              Rule(match="seats", reply="Pro has 10 seats [1]."),
              Rule(match="weather", reply="I don't know; the passages don't say.")]
    return rules


def build_repository(root: Path, case: Case) -> Path:
    """A git repository in ``root``: main holds the base files, branch ``change`` the case's edit."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for name, text in BASE_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    git(root, "switch", "-qc", "change")
    for name, edit in case.edits.items():
        (root / name).write_text(edit((root / name).read_text()))
    git(root, "add", "-A")
    git(root, "commit", "-qm", case.message)
    return root


def run_case(root: Path, stub: StubServer) -> CheckReport:
    """The check of the branch against main, as `promptops ci` runs it (from inside the repository)."""
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return run_check(root, CheckOptions(base="main", eval_options=EvalOptions(api_base=stub.base_url)))
    finally:
        os.chdir(cwd)


# The texts publish.py renders a check into, with the arguments it gives (the hint: a fixed one).
FULL_REPORT_HINT = "the summary of this workflow run and its promptops-report artifact"
SUMMARY_FOOTER = "Written by promptops ci; the HTML report is in the promptops-report artifact."


def render_all(report: CheckReport) -> dict[str, str]:
    """Every rendering of a check: file name -> text."""
    comparisons, skipped = report.evals.comparisons, report.evals.skipped
    return {
        "comment.md": check.render_markdown(report, limit=body_limit(COMMENT_KEY), full_report=FULL_REPORT_HINT),
        "summary.md": check.render_markdown(report, limit=check.SUMMARY_LIMIT, footer=SUMMARY_FOOTER),
        "report.md": check.render_markdown(report, limit=check.SUMMARY_LIMIT, footer="Written by promptops ci."),
        "report.html": check.render_html(report),
        "report.json": check.render_json(report),
        "evals.json": evals.render_json(comparisons, report.base_label, report.head_label, skipped),
        "evals.txt": evals.render_text(comparisons, skipped),
        "junit.xml": evals.render_junit(comparisons),
        # `promptops cost` and `promptops diff` on the same change
        "cost.md": cost.render_markdown(report.cost),
        "cost.json": cost.render_json(report.cost),
        "cost.txt": cost.render_table(report.cost),
        "diff.md": diff.render_markdown(report.diff, report.base_label, report.head_label),
        "diff.json": diff.render_json(report.diff, report.base_label, report.head_label),
        "diff.txt": diff.render_text(report.diff, report.base_label, report.head_label),
    }


# -- what varies between runs -------------------------------------------------------------------

_JOINER = "\u2060"
# A ref's commit in its label, "main (9ef0b8254722)", as inline() may have broken it up.
_COMMIT = re.compile(rf"\(([0-9a-f]{{4}}{_JOINER}?[0-9a-f]{{3,36}})\)")
_MS = r"(?<![\w.,])[+-]?[\d,]+(?:\.\d+)?"
_LATENCY_TEXT = [  # Markdown, HTML and text: figures timed in this run
    (re.compile(rf"{_MS} ms"), "<ms> ms"),
    (re.compile(rf"\(\?|{_MS}\)?–(?:\?|{_MS}) ms"), "<ms>–<ms> ms"),
    (re.compile(r"\((?:\?|[\d,]+)–(?:\?|[\d,]+)\)"), "(<ms>–<ms>)"),
    (re.compile(rf"95% CI {_MS} to {_MS}"), "95% CI <ms> to <ms>"),
    (re.compile(r"(\), p = |at the median \(p = )[\d.e+-]+"), r"\1<p>"),
    (re.compile(r"over \d+ timed call"), "over <n> timed call"),
    (re.compile(r"\(\d+ timed\)"), "(<n> timed)"),
    (re.compile(r'<td class="num">\d+ / \d+</td>'), '<td class="num"><ms> / <ms></td>'),  # HTML: p50 / p95
    # Base and head p95 timed alike show one figure, not an arrow: that is chance here.
    (re.compile(r"<ms> ms → <ms> ms"), "<ms> ms"),
]
_LITELLM = re.compile(r"litellm \d+\.\d+\.\d+")  # the installed version names the price map's source
_HISTOGRAM = re.compile(r'<svg class="chart"[^>]*aria-label="Latency distribution.*?</svg>', re.DOTALL)
_JSON_LATENCY_KEYS = re.compile(r"latency|shift")  # figure names; "p_value" inside "latency" goes too


def normalised(name: str, text: str, root: Path) -> str:
    """``text`` with the temporary folder, commit hashes and this run's latencies replaced by placeholders."""
    text = text.replace(str(root.resolve()), "<repo>").replace(str(root), "<repo>")
    text = _LITELLM.sub("litellm <version>", _COMMIT.sub("(<commit>)", text))
    if name.endswith(".json"):
        # Written back as the renderers write it: indented, sorted, ASCII-escaped unless it was not.
        return json.dumps(_json_normalised(json.loads(text)), indent=2, sort_keys=True,
                          ensure_ascii=text.isascii()) + "\n"
    text = _HISTOGRAM.sub("<latency histogram>", text)
    for pattern, placeholder in _LATENCY_TEXT:
        text = pattern.sub(placeholder, text)
    return text


def _json_normalised(value: Any, key: str = "") -> Any:
    if _JSON_LATENCY_KEYS.search(key) and key != "latency_changed":
        return _placeholders(value)
    if isinstance(value, dict):
        return {k: _json_normalised(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_normalised(v, key) for v in value]
    if isinstance(value, str):
        return normalised("text", value, Path("/nonexistent"))
    return value


def _placeholders(value: Any) -> Any:
    """Numbers become "<n>"; booleans (changed or not) and None stay, as the verdict depends on them."""
    if isinstance(value, dict):
        return {k: _placeholders(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "<n>"
    if isinstance(value, str):
        return normalised("text", value, Path("/nonexistent"))
    return value
