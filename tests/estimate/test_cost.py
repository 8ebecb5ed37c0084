"""`promptops cost`: token and cost deltas between two refs of a real git repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from helpers.cli import run_promptops
from helpers.repo import git, git_env
from promptops import resources
from promptops.models import ModelCatalog
from promptops.resultcache import connect

CONFIG = """\
usage:
  support.answer: {calls_per_day: 1000}
  support.other: {calls_per_day: 500}
"""
RETRIEVAL = """\
id: kb
embedding: {model: openai/text-embedding-3-small}
chunking: {size: 512, overlap: 64}
retriever: {top_k: 5}
index: {name: kb-v1}
"""
ANSWER = """\
id: support.answer
model:
  name: openai/gpt-4o
  params: {max_tokens: 200}
retrieval: {config: kb, into: passages}
inputs:
  type: object
  required: [question, passages]
  properties:
    question: {type: string}
    passages: {type: array, items: {type: string}}
messages:
  - role: system
    content: Answer from the passages only.
  - role: user
    content: "{% for p in passages %}{{ p }}{% endfor %}Question: {{ question }}"
budget: {max_input_tokens: 100000}
"""
OTHER = """\
id: support.other
model: {name: openai/gpt-4o-mini, params: {max_tokens: 50}}
inputs: {type: object, properties: {text: {type: string}}, required: [text]}
messages: [{role: user, content: "Summarise: {{ text }}"}]
"""
SUITE = """\
prompt: support.answer
cases:
  - {id: short, vars: {question: "Refunds?", passages: []}}
  - {id: long, vars: {question: "How long do I have to ask for a refund after buying a yearly plan?", passages: []}}
"""


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    write(tmp_path, {
        "promptops.yaml": CONFIG, "kb.retrieval.yaml": RETRIEVAL, "prompts/answer.prompt.yaml": ANSWER,
        "prompts/other.prompt.yaml": OTHER, "evals/answer.eval.yaml": SUITE,
    })
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    return tmp_path


def commit(root: Path, message: str = "head") -> None:
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)


def cost(root: Path, *args: str, expect: int = 0, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = run_promptops(["cost", "--format", "json", *args], cwd=root, env=git_env(**(env or {})))
    assert done.returncode == expect, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def prompt(report: dict[str, Any], prompt_id: str) -> dict[str, Any]:
    return next(p for p in report["prompts"] if p["id"] == prompt_id)


def test_model_swap_lowers_cost_by_the_price_ratio(repo: Path) -> None:
    path = repo / "prompts" / "answer.prompt.yaml"
    path.write_text(ANSWER.replace("openai/gpt-4o\n", "openai/gpt-4o-mini\n"))
    commit(repo)
    report = cost(repo, "--base", "HEAD~1", "--head", "HEAD")
    answer = prompt(report, "support.answer")
    assert answer["status"] == "changed"
    assert answer["base"]["model"] == "openai/gpt-4o" and answer["head"]["model"] == "openai/gpt-4o-mini"
    assert answer["base"]["input_tokens"] == answer["head"]["input_tokens"]  # the same o200k tokens
    mini, full = ModelCatalog().get("openai/gpt-4o-mini").price, ModelCatalog().get("openai/gpt-4o").price
    ratio = mini.input / full.input
    assert mini.output / full.output == pytest.approx(ratio)
    assert answer["head"]["cost_per_call_usd"] / answer["base"]["cost_per_call_usd"] == pytest.approx(ratio, rel=1e-6)
    assert answer["delta"]["cost_per_call"]["percent"] == pytest.approx((ratio - 1) * 100, rel=1e-4)
    assert report["totals"]["monthly_delta_usd"] < 0
    assert report["headline"].startswith("Monthly cost falls by")


def test_raising_top_k_adds_its_chunks_tokens(repo: Path) -> None:
    (repo / "kb.retrieval.yaml").write_text(RETRIEVAL.replace("top_k: 5", "top_k: 12"))
    commit(repo)
    answer = prompt(cost(repo, "--base", "HEAD~1", "--head", "HEAD"), "support.answer")
    assert answer["delta"]["input_tokens"]["absolute"] == 7 * 512
    assert answer["head"]["retrieval_tokens"] == 12 * 512
    assert answer["head"]["input_basis"] == "2 eval cases"


def test_a_reranker_caps_what_the_prompt_receives(repo: Path) -> None:
    (repo / "kb.retrieval.yaml").write_text(RETRIEVAL.replace("top_k: 5", "top_k: 20") +
                                            "reranker: {model: cohere/rerank-v3.5, top_n: 3}\n")
    answer = prompt(cost(repo, "--base", "HEAD"), "support.answer")  # head: the working tree
    assert answer["delta"]["input_tokens"]["absolute"] == -2 * 512


def test_comments_and_key_order_change_nothing(repo: Path) -> None:
    text = ANSWER.replace("id: support.answer\n", "# a comment\nid: support.answer   # the id\n")
    text = text.replace("  params: {max_tokens: 200}\n", "  params:\n    max_tokens: 200\n")
    (repo / "prompts" / "answer.prompt.yaml").write_text(text)
    commit(repo)
    report = cost(repo, "--base", "HEAD~1", "--head", "HEAD")
    assert {p["status"] for p in report["prompts"]} == {"unchanged"}
    assert report["totals"]["monthly_delta_usd"] == 0


def test_a_renamed_file_keeps_its_id(repo: Path) -> None:
    git(repo, "mv", "prompts/answer.prompt.yaml", "prompts/answering.prompt.yaml")
    commit(repo)
    answer = prompt(cost(repo, "--base", "HEAD~1", "--head", "HEAD"), "support.answer")
    assert answer["status"] == "unchanged"
    assert answer["base"]["path"].endswith("answer.prompt.yaml")
    assert answer["head"]["path"].endswith("answering.prompt.yaml")


def test_a_deleted_prompt_removes_its_cost(repo: Path) -> None:
    before = prompt(cost(repo, "--base", "HEAD", "--head", "HEAD"), "support.other")["head"]["monthly_cost_usd"]
    git(repo, "rm", "-q", "prompts/other.prompt.yaml")
    commit(repo)
    report = cost(repo, "--base", "HEAD~1", "--head", "HEAD")
    other = prompt(report, "support.other")
    assert other["status"] == "removed" and other["head"] is None
    assert report["totals"]["monthly_delta_usd"] == pytest.approx(-before)


def test_an_unknown_model_costs_unknown_never_a_number(repo: Path) -> None:
    (repo / "prompts" / "other.prompt.yaml").write_text(OTHER.replace("openai/gpt-4o-mini", "acme/house-model-7"))
    report = cost(repo, "--base", "HEAD")
    other = prompt(report, "support.other")
    assert other["head"]["cost_per_call_usd"] is None and other["head"]["monthly_cost_usd"] is None
    assert any("no known price" in w for w in other["head"]["warnings"])
    assert other["delta"]["cost_per_call"] == {"absolute": None, "percent": None}
    assert report["totals"]["unknown"] == ["support.other"]
    table = run_promptops(["cost", "--base", "HEAD"], cwd=repo, env=git_env())
    assert "unknown" in table.stdout and table.returncode == 0


def test_pricing_overrides_the_price_map(repo: Path) -> None:
    write(repo, {"promptops.yaml": CONFIG + "pricing:\n  acme/house-model-7: {input: 1.0, output: 2.0}\n",
                 "prompts/other.prompt.yaml": OTHER.replace("openai/gpt-4o-mini", "acme/house-model-7")})
    head = prompt(cost(repo, "--base", "HEAD"), "support.other")["head"]
    assert head["price_source"] == "promptops.yaml pricing"
    assert head["cost_per_call_usd"] == pytest.approx(head["input_tokens"] * 1e-6 + 50 * 2e-6)
    assert head["token_method"]["exact"] is False  # no public tokenizer for it: an approximation, flagged


def test_observed_output_tokens_replace_the_max_tokens_bound(repo: Path) -> None:
    bound = prompt(cost(repo, "--base", "HEAD"), "support.other")["head"]
    assert bound["output_tokens"] == 50 and bound["output_basis"].startswith("max_tokens")
    from promptops.loader import Loader

    version = Loader(repo).load(repo / "prompts" / "other.prompt.yaml").spec.version
    with connect(repo / ".promptops" / "cache.db") as db:
        for i, tokens in enumerate((10, 20, 30)):
            db.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (f"k{i}", "support.other", version, "openai/gpt-4o-mini", f"c{i}", 0, "x", 5, tokens,
                        100.0, None, "2026-01-01T00:00:00Z"))
    observed = prompt(cost(repo, "--base", "HEAD"), "support.other")["head"]
    assert observed["output_tokens"] == 20
    assert observed["output_basis"] == "mean of 3 cached eval results (this version)"


def test_budgets_fail_the_check_and_warn_only_on_request(repo: Path) -> None:
    (repo / "prompts" / "answer.prompt.yaml").write_text(
        ANSWER.replace("budget: {max_input_tokens: 100000}",
                       "budget: {max_input_tokens: 100, max_cost_per_call_usd: 0.0001}"))
    report = cost(repo, "--base", "HEAD", expect=1)
    assert [f["code"] for f in report["findings"]] == ["PO410", "PO411"]
    assert report["findings"][0]["line"] == 17
    cost(repo, "--base", "HEAD", "--warn", expect=0)


def test_fail_on_increase(repo: Path) -> None:
    (repo / "kb.retrieval.yaml").write_text(RETRIEVAL.replace("top_k: 5", "top_k: 12"))
    cost(repo, "--base", "HEAD", "--fail-on-increase", "10", expect=1)
    cost(repo, "--base", "HEAD", "--fail-on-increase", "1000", expect=0)


def test_default_base_is_the_merge_base_with_the_default_branch(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "kb.retrieval.yaml").write_text(RETRIEVAL.replace("top_k: 5", "top_k: 6"))
    commit(repo)
    report = cost(repo)
    assert report["base"].startswith("merge-base with main")
    assert report["head"] == "working tree"
    assert prompt(report, "support.answer")["delta"]["input_tokens"]["absolute"] == 512


def test_github_base_ref_names_the_base_in_a_pull_request_job(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "release")
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "kb.retrieval.yaml").write_text(RETRIEVAL.replace("top_k: 5", "top_k: 6"))
    commit(repo)
    report = cost(repo, env={"GITHUB_BASE_REF": "release"})
    assert report["base"].startswith("merge-base with release")
    missing = run_promptops(["cost"], cwd=repo, env=git_env(GITHUB_BASE_REF="nope"))
    assert missing.returncode == 2 and "origin/nope" in missing.stderr and "git fetch" in missing.stderr


def test_detached_head_and_a_base_without_config(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    write(tmp_path, {"prompts/other.prompt.yaml": OTHER})
    commit(tmp_path, "no config yet")
    write(tmp_path, {"promptops.yaml": CONFIG})
    commit(tmp_path, "config")
    git(tmp_path, "checkout", "-q", "--detach", "HEAD")
    report = cost(tmp_path, "--base", "HEAD~1")
    other = prompt(report, "support.other")
    assert other["base"]["monthly_cost_usd"] is None and other["head"]["monthly_cost_usd"] is not None


def test_shallow_clone_says_which_fetch_to_run(repo: Path, tmp_path: Path) -> None:
    (repo / "kb.retrieval.yaml").write_text(RETRIEVAL.replace("top_k: 5", "top_k: 6"))
    commit(repo)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", "--no-local", f"file://{repo}", str(clone))
    done = run_promptops(["cost", "--base", "HEAD~1"], cwd=clone, env=git_env())
    assert done.returncode == 2
    assert "shallow clone" in done.stderr and "git fetch" in done.stderr and "Traceback" not in done.stderr


def test_staged_compares_head_with_the_index(repo: Path) -> None:
    (repo / "kb.retrieval.yaml").write_text(RETRIEVAL.replace("top_k: 5", "top_k: 7"))
    git(repo, "add", "kb.retrieval.yaml")
    (repo / "kb.retrieval.yaml").write_text(RETRIEVAL.replace("top_k: 5", "top_k: 9"))  # unstaged: ignored
    report = cost(repo, "--staged")
    assert report["head"] == "staged changes"
    assert prompt(report, "support.answer")["delta"]["input_tokens"]["absolute"] == 2 * 512


def test_json_report_matches_its_schema_and_is_deterministic(repo: Path) -> None:
    (repo / "prompts" / "answer.prompt.yaml").write_text(ANSWER.replace("openai/gpt-4o\n", "openai/gpt-4o-mini\n"))
    first = cost(repo, "--base", "HEAD")
    Draft202012Validator(resources.schema("cost-report")).validate(first)
    assert cost(repo, "--base", "HEAD") == first


def test_markdown_report(repo: Path) -> None:
    (repo / "prompts" / "answer.prompt.yaml").write_text(ANSWER.replace("openai/gpt-4o\n", "openai/gpt-4o-mini\n"))
    done = run_promptops(["cost", "--base", "HEAD", "--format", "markdown"], cwd=repo, env=git_env())
    assert done.returncode == 0, done.stderr
    assert "Monthly cost falls by" in done.stdout
    assert "| support.answer | openai/gpt-4o → openai/gpt-4o-mini |" in done.stdout
    assert "<details>" in done.stdout


def _cost_text(root: Path, *args: str) -> str:
    done = run_promptops(["cost", "--base", "HEAD", *args], cwd=root, env=git_env())
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_only_changed_prompts_are_listed_unless_all(repo: Path) -> None:
    (repo / "prompts" / "other.prompt.yaml").write_text(OTHER.replace("max_tokens: 50", "max_tokens: 80"))
    table = _cost_text(repo)
    assert "support.other" in table and "support.answer" not in table
    assert "1 unchanged prompt not shown (--all lists them)." in table
    every = _cost_text(repo, "--all")
    assert "support.other" in every and "support.answer" in every and "not shown" not in every
    markdown = _cost_text(repo, "--format", "markdown")
    assert "| support.other |" in markdown and "| support.answer |" not in markdown
    assert "1 unchanged prompt not shown (--all lists them)." in markdown
    assert "- support.answer:" not in markdown  # nor in the details
    assert "| support.answer |" in _cost_text(repo, "--format", "markdown", "--all")
    report = cost(repo, "--base", "HEAD")  # json lists every prompt, each with its status
    assert {p["id"]: p["status"] for p in report["prompts"]} == {"support.answer": "unchanged",
                                                               "support.other": "changed"}


def test_a_change_that_moves_no_figure_lists_no_row(repo: Path) -> None:
    (repo / "prompts" / "other.prompt.yaml").write_text("# a comment\n" + OTHER)
    table = _cost_text(repo)
    assert "┃ prompt" not in table and "2 unchanged prompts not shown (--all lists them)." in table
    assert "No prompt changes cost." in table or "Monthly cost is unchanged" in table
    assert "| Prompt |" not in _cost_text(repo, "--format", "markdown")


RERANKED = RETRIEVAL + "reranker: {model: cohere/rerank-v3.5, top_n: 5}\n"


def test_a_reranker_swap_moves_the_retrieval_cost_and_the_monthly_alone(repo: Path) -> None:
    (repo / "promptops.yaml").write_text(CONFIG + "pricing:\n  acme/rerank-lite: {per_query: 0.0005}\n")
    (repo / "kb.retrieval.yaml").write_text(RERANKED)
    commit(repo, "cohere reranker")
    (repo / "kb.retrieval.yaml").write_text(RERANKED.replace("cohere/rerank-v3.5", "acme/rerank-lite"))
    report = cost(repo, "--base", "HEAD")
    Draft202012Validator(resources.schema("cost-report")).validate(report)
    answer = prompt(report, "support.answer")
    assert answer["status"] == "changed"  # the prompt and its model call are the same: retrieval alone moved
    assert answer["delta"]["cost_per_call"]["absolute"] == 0 and answer["delta"]["input_tokens"]["absolute"] == 0
    assert answer["base"]["retrieval_cost_per_call_usd"] - answer["head"]["retrieval_cost_per_call_usd"] == (
        pytest.approx(0.002 - 0.0005))
    assert answer["delta"]["retrieval_cost_per_call"]["absolute"] == pytest.approx(-0.0015)
    assert answer["delta"]["monthly_cost"]["absolute"] == pytest.approx(-0.0015 * 1000 * 30)  # usage: 1,000 a day
    assert report["totals"]["monthly_delta_usd"] == pytest.approx(-45)
    assert answer["head"]["retrieval_basis"].endswith("and a rerank by acme/rerank-lite ($0.0005 a query)")

    table = _cost_text(repo)
    assert "retrieval / call" in table and "$0.0005" in table and "(-$0.0015," in table
    assert "monthly figure counts both" in table
    markdown = _cost_text(repo, "--format", "markdown")
    assert "| Cost per call | Retrieval per call | Monthly (model and retrieval) |" in markdown
    assert "retrieval per call: the query embedded with openai/text-embedding-3-small" in markdown


def test_an_embedding_model_swap_moves_the_retrieval_cost_by_the_price_of_the_query(repo: Path) -> None:
    (repo / "kb.retrieval.yaml").write_text(RETRIEVAL.replace("text-embedding-3-small", "text-embedding-3-large"))
    answer = prompt(cost(repo, "--base", "HEAD"), "support.answer")
    small = ModelCatalog().get("openai/text-embedding-3-small").price.input
    large = ModelCatalog().get("openai/text-embedding-3-large").price.input
    base, head = answer["base"]["retrieval_cost_per_call_usd"], answer["head"]["retrieval_cost_per_call_usd"]
    assert head / base == pytest.approx(large / small)  # the same query, in the same cl100k tokens
    assert answer["status"] == "changed" and answer["delta"]["cost_per_call"]["absolute"] == 0
    assert answer["delta"]["monthly_cost"]["absolute"] == pytest.approx((head - base) * 1000 * 30, abs=1e-6)


def test_the_monthly_counts_retrieval_and_the_cost_budget_judges_the_model_call(repo: Path) -> None:
    (repo / "kb.retrieval.yaml").write_text(RERANKED)
    model_call = prompt(cost(repo, "--base", "HEAD"), "support.answer")["head"]["cost_per_call_usd"]
    # A budget the model call keeps and the model call plus its $0.002 rerank would break: no PO411.
    (repo / "prompts" / "answer.prompt.yaml").write_text(
        ANSWER.replace("budget: {max_input_tokens: 100000}",
                       f"budget: {{max_input_tokens: 100000, max_cost_per_call_usd: {model_call * 1.01:.6f}}}"))
    report = cost(repo, "--base", "HEAD")
    assert report["findings"] == []
    head = prompt(report, "support.answer")["head"]
    assert head["retrieval_cost_per_call_usd"] > 0.002
    assert head["monthly_cost_usd"] == pytest.approx(
        (head["cost_per_call_usd"] + head["retrieval_cost_per_call_usd"]) * 1000 * 30, abs=1e-6)
    other = prompt(report, "support.other")["head"]
    assert (other["retrieval_cost_per_call_usd"], other["retrieval_basis"]) == (0, "")
    assert other["monthly_cost_usd"] == pytest.approx(other["cost_per_call_usd"] * 500 * 30, abs=1e-6)
