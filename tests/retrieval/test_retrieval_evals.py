"""Retrieval run in evals, end to end: a bicycle workshop's help centre (a corpus and a suite no other test
uses) retrieved for the cases that give no passages, scored against their expected sources, and compared
base against head through the real check stage, litellm and the stub server's /v1/embeddings."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from helpers.cli import run_promptops
from helpers.repo import git
from promptops.ci import CheckOptions, run_check
from promptops.evals.execute import EvalOptions
from promptops.model.check import CheckReport
from promptops.model.evals import CaseStatus, Failure
from promptops.report import check, evals
from promptops.report.formatting import money
from promptops.testing import Rule, StubServer, WordJudge

DOCS = {
    "help/chain.md": "---\ntopic: drivetrain\n---\n# Chain care\n\nOil the chain every 300 km with a dry lube, "
                     "after you wipe the old oil off the chain.\n",
    "help/tyres.md": "---\ntopic: wheels\n---\n# Tyre pressure\n\nRoad tyres run at 6 bar; check the pressure "
                     "every week with a track pump.\n",
    "help/brakes.md": "---\ntopic: brakes\n---\n# Brake pads\n\nReplace the brake pads when the groove is gone, "
                      "which is about every 2000 km of riding.\n",
    "help/warranty.md": "---\ntopic: shop\n---\n# Frame warranty\n\nEvery frame we sell carries a lifetime "
                        "warranty for its first owner.\n",
    "help/saddle.md": "---\ntopic: fit\n---\n# Saddle height\n\nSet the saddle so your knee is slightly bent "
                      "at the bottom of the pedal stroke.\n",
}
RETRIEVAL = """\
id: workshop_kb
description: DESCRIPTION
embedding: {model: openai/text-embedding-3-small, dimensions: 64}
chunking: {strategy: markdown, size: 120, overlap: 0, unit: tokens}
retriever: {top_k: TOP_K}
corpus: {include: ["../help/*.md"]}
index: {name: workshop-v1}
"""
PROMPT = """\
id: workshop.help
model: {name: openai/gpt-4o-mini, params: {temperature: 0, max_tokens: 40}}
retrieval: {config: workshop_kb, into: passages, query: question}
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
SUITE = """\
prompt: workshop.help
gates: {max_pass_rate_drop: 0.0, min_recall_at_k: 0.5, max_recall_drop: 0.0}
cases:
  - id: chain
    vars: {question: "How often should I oil the chain?"}
    expected_sources: [help/chain.md]
    assert: [{type: contains, value: "300 km"}]
  - id: brakes
    vars: {question: "When do brake pads need replacing?"}
    expected_sources: [brakes]
    assert: [{type: contains, value: "2000 km"}]
  - id: pads-distance
    vars: {question: "After how many km of riding with the chain are pads gone?"}
    expected_sources: [help/brakes.md]
    assert: [{type: contains, value: "2000 km"}]
  - id: fixture
    vars: {question: "Is the frame covered?", passages: ["Frames have a lifetime warranty."]}
    assert: [{type: contains, value: "lifetime"}]
"""
CONFIG = "usage:\n  workshop.help: {calls_per_day: 400}\neval: {concurrency: 2}\n"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
FILES = {"promptops.yaml": CONFIG, "retrieval/workshop.retrieval.yaml": RETRIEVAL, "prompts/help.prompt.yaml": PROMPT,
         "evals/help.eval.yaml": SUITE, **DOCS}


def rules() -> list[Rule]:
    """An answer only when the passage that holds it is in the message."""
    return [Rule(match="re:(?s)every 300 km.*Question: How often should I oil", reply="Oil it every 300 km."),
            Rule(match="re:(?s)every 2000 km.*Question: (When do brake|After how many km)",
                 reply="About every 2000 km."),
            Rule(match="re:(?s)lifetime warranty.*Question: Is the frame", reply="Yes, a lifetime warranty."),
            Rule(reply="I don't know; the passages don't say.")]


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    with StubServer(rules(), embedding_dim=64) as server:
        yield server


def repository(root: Path, top_k: int = 3, description: str = "Workshop help centre") -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for name, text in FILES.items():
        text = text.replace("TOP_K", str(top_k)).replace("DESCRIPTION", description)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / ".gitignore").write_text(".promptops/\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    git(root, "switch", "-qc", "change")
    return root


def commit_edit(root: Path, old: str, new: str) -> None:
    path = root / "retrieval/workshop.retrieval.yaml"
    path.write_text(path.read_text().replace(old, new))
    git(root, "commit", "-qam", f"{old} -> {new}")


def checked(root: Path, stub: StubServer, run_all: bool = False) -> CheckReport:
    cwd = os.getcwd()
    os.chdir(root)
    try:
        options = EvalOptions(api_base=stub.base_url, run_all=run_all)
        return run_check(root, CheckOptions(base="main", eval_options=options))
    finally:
        os.chdir(cwd)


def test_a_top_k_cut_that_drops_the_answer_shows_the_lost_source_lower_recall_and_the_regression(
        stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    commit_edit(root, "top_k: 3", "top_k: 1")
    report = checked(root, stub)

    [suite] = report.evals.comparisons
    retrieval = suite.retrieval
    assert retrieval is not None and retrieval.base is not None, report.evals.skipped
    assert (retrieval.base.k, retrieval.head.k) == (3, 1)
    assert retrieval.base.recall == 1.0 and retrieval.head.recall < retrieval.base.recall
    lost = {change.case_id: change for change in retrieval.changes}
    assert "pads-distance" in lost and lost["pads-distance"].lost == ("help/brakes.md",)
    assert lost["pads-distance"].answer is CaseStatus.REGRESSED
    assert retrieval.verdict == "regression" and retrieval.lost >= 1
    assert [c.case_id for c in suite.with_status(CaseStatus.REGRESSED)] == sorted(lost)
    gates = dict(suite.gates)
    assert not gates["max_recall_drop"].passed and "falls" in gates["max_recall_drop"].reason
    assert not gates["max_pass_rate_drop"].passed
    assert report.verdict.level == "fail"
    # the case that brings its own passages keeps them, at both refs
    fixture_prompts = [m["content"] for r in stub.requests if "messages" in r for m in r["messages"]
                       if "Is the frame covered?" in m["content"]]
    assert fixture_prompts and all("Frames have a lifetime warranty." in text and "Every frame we sell" not in text
                                   for text in fixture_prompts)

    comment = check.render_markdown(report)
    line = next(text for text in comment.splitlines() if "recall@" in text)
    assert "recall@\u20603 100% → recall@\u20601 67%" in line and "answers pass 100% → 75%" in line, line
    # the same retrieval config but top_k: each query's embedding costs the same at both refs
    text = check.retrieval_text(report.summary.retrieval[0])  # the line before Markdown escapes it
    assert re.search(r"plus retrieval \$0\.000000\d+ a query · per month est\. \(model and retrieval\)", text), text
    assert "per month est. (model and retrieval) &#36;0.77 → &#36;0.32" in line and "no re-index" in line, line
    assert "help/brakes.md" in comment and "pads-distance" in comment
    case_line = next(text for text in comment.splitlines() if text.startswith("- pads") and "lost" in text)
    assert "recall 100% → 0%" in case_line and "answer regressed" in case_line, case_line

    results = evals.to_json(report.evals.comparisons, report.base_label, report.head_label, report.evals.skipped)
    jsonschema.validate(results, json.loads((SCHEMAS / "eval-results.schema.json").read_text()))
    [suite_json] = results["suites"]
    assert suite_json["retrieval"]["changes"][0]["lost"] == ["help/brakes.md"]
    assert suite_json["retrieval"]["head"]["k"] == 1 and suite_json["retrieval"]["verdict"] == "regression"
    line_json = json.loads(check.render_json(report))["retrieval"][0]
    assert line_json["suite"] == "evals/help.eval.yaml" and "recall@3 100% → recall@1 67%" in line_json["line"]
    assert "Recall@k per suite" in check.render_html(report)


def test_a_reranker_added_shows_its_price_per_query_in_the_cost_per_call_and_the_month(
        stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    commit_edit(root, "retriever: {top_k: 3}", "retriever: {top_k: 4}\nreranker: {model: cohere/rerank-v3.5, top_n: 2}")
    report = checked(root, stub)

    [change] = [c for c in report.cost.changes if c.prompt_id == "workshop.help"]
    base, head = change.base, change.head
    assert base is not None and head is not None and base.retrieval_cost_per_call is not None
    assert base.retrieval_cost_per_call < 1e-6  # the query's embedding alone
    assert head.retrieval_cost_per_call == pytest.approx(0.002 + base.retrieval_cost_per_call)  # and the rerank
    assert head.monthly_cost == pytest.approx((head.cost_per_call + head.retrieval_cost_per_call) * 400 * 30)
    assert head.monthly_cost > 24  # 400 reranks a day at $0.002: what the model call's figure alone leaves out

    line = check.retrieval_text(report.summary.retrieval[0])  # the line before Markdown escapes it
    assert (f"cost per call est. {money(base.cost_per_call)} → {money(head.cost_per_call)} plus retrieval "
            f"{money(base.retrieval_cost_per_call)} → $0.002 a query") in line, line
    assert f"per month est. (model and retrieval) {money(base.monthly_cost)} → {money(head.monthly_cost)}" in line
    comment = check.render_markdown(report)
    assert "per month est. (model and retrieval) &#36;" in comment
    row = next(text for text in comment.splitlines() if text.startswith("| workshop.help |"))
    assert re.search(r"est\. \$0\.0000\d+ → \$0\.0000\d+ plus retrieval \$0\.000000\d+ → \$0\.002 · measured", row), row
    assert "a prompt that retrieves also pays retrieval per call" in comment

    document = json.loads(check.render_json(report))
    line_json, [row_json] = document["retrieval"][0], document["prompts"]
    assert line_json["retrieval_cost_per_call_usd"] == row_json["retrieval_cost_per_call_usd"] == {
        "estimated": {"base": base.retrieval_cost_per_call, "head": head.retrieval_cost_per_call}}
    [estimate_json] = [p for p in document["cost"]["prompts"] if p["id"] == "workshop.help"]
    assert estimate_json["delta"]["retrieval_cost_per_call"]["absolute"] == pytest.approx(0.002)
    assert line_json["monthly_cost_usd"]["estimated"]["head"] == head.monthly_cost


def test_a_cosmetic_change_to_the_retrieval_file_re_embeds_nothing_and_makes_no_call(
        stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    checked(root, stub, run_all=True)  # main's own run fills the cache and the index, as its CI run would
    commit_edit(root, "Workshop help centre", "The workshop's help centre, for riders")
    stub.reset()
    report = checked(root, stub)

    assert stub.requests == []  # no embedding, no query, no answer: all from the index and the cache
    [suite] = report.evals.comparisons
    retrieval = suite.retrieval
    assert retrieval is not None and retrieval.base is not None
    assert retrieval.head.calls == 0 and retrieval.base.calls == 0
    assert retrieval.changes == [] and retrieval.verdict == "no change" and retrieval.reindex is None
    assert retrieval.head.recall == retrieval.base.recall == 1.0


def test_a_new_embedding_model_under_the_same_index_name_is_flagged_with_its_re_index_cost(
        stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    commit_edit(root, "openai/text-embedding-3-small", "openai/text-embedding-3-large")
    report = checked(root, stub)

    [suite] = report.evals.comparisons
    retrieval = suite.retrieval
    assert retrieval is not None and retrieval.reindex is not None
    assert "text-embedding-3-small -> openai/text-embedding-3-large under the same index name 'workshop-v1'" \
        in retrieval.reindex and "re-index needed" in retrieval.reindex
    assert 100 < retrieval.reindex_tokens < 400  # five short help articles, in the new model's tokens
    # corpus tokens at text-embedding-3-large's price in litellm's map
    assert retrieval.reindex_cost_usd == pytest.approx(retrieval.reindex_tokens * 1.3e-07)
    comment = check.render_markdown(report)
    line = next(text for text in comment.splitlines() if text.startswith("**Retrieval:**"))
    assert f"re-index est. {money(retrieval.reindex_cost_usd).replace('$', '&#36;')} one-off " \
           f"({retrieval.reindex_tokens} corpus tokens)" in line, line


def test_promptops_eval_prints_recall_hit_and_mrr_base_against_head_with_the_moved_sources(
        stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    commit_edit(root, "top_k: 3", "top_k: 1")
    result = run_promptops(["eval", "--base", "main", "--api-base", stub.base_url], root)

    lines = result.stdout.splitlines()
    line = next(text for text in lines if text.startswith("  retrieval workshop_kb:"))
    assert "recall@3 100.0% -> recall@1 66.7%" in line and "hit@3 100.0% -> hit@1 66.7%" in line, line
    assert "MRR 0.83 -> 0.67 over 3 case(s) with expected sources" in line, line
    assert "regression: 1 case(s) lost every expected source, 0 gained" in line, line
    moved = next(text for text in lines if "sources moved" in text)
    assert moved == "    sources moved pads-distance: lost help/brakes.md (recall 100.0% -> 0.0%); answer regressed"
    assert not any(text.startswith("  re-index") for text in lines)  # embedding and chunking unchanged
    assert result.returncode == 1


def test_promptops_eval_names_the_re_index_a_new_embedding_model_needs_and_its_cost(
        stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    commit_edit(root, "openai/text-embedding-3-small", "openai/text-embedding-3-large")
    result = run_promptops(["eval", "--base", "main", "--api-base", stub.base_url], root)

    note = next(text for text in result.stdout.splitlines() if text.startswith("  re-index:"))
    assert "text-embedding-3-small -> openai/text-embedding-3-large under the same index name 'workshop-v1'" in note
    assert re.search(r"; one-off est\. \$0\.0000\d+ for \d{3} corpus tokens$", note), note


def test_promptops_eval_without_a_base_prints_the_head_figures_alone(stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    result = run_promptops(["eval", "--no-base", "--api-base", stub.base_url], root)
    line = next(text for text in result.stdout.splitlines() if text.startswith("  retrieval workshop_kb:"))
    assert line == ("  retrieval workshop_kb: recall@3 100.0%, hit@3 100.0%, MRR 0.83 over 3 case(s) with "
                    "expected sources"), line


JUDGED_SUITE = """\
prompt: workshop.help
retrieval: {judge: [context_precision, context_recall]}
gates: {min_context_recall: 0.9, max_context_recall_drop: 0.0, min_context_precision: 0.9}
cases:
  - id: chain
    vars: {question: "How often should I oil the chain?"}
    expected: "Oil the chain every 300 km."
    assert: [{type: contains, value: "300 km"}]
  - id: brakes
    vars: {question: "When do brake pads need replacing?"}
    expected: "About every 2000 km."
    assert: [{type: contains, value: "2000 km"}]
  - id: pads-distance
    vars: {question: "After how many km of riding with the chain are pads gone?"}
    expected: "About every 2000 km of riding."
    assert: [{type: contains, value: "2000 km"}]
  - id: fixture
    vars: {question: "Is the frame covered?", passages: ["Frames have a lifetime warranty."]}
    expected: "A lifetime warranty."
    assert: [{type: contains, value: "lifetime"}]
"""
JUDGE_PROMPTS = ("Decide whether the passage is relevant", "Split the answer into atomic claims", "For each claim")


def judge_requests(stub: StubServer) -> list[str]:
    texts = [r["messages"][-1]["content"] for r in stub.requests if "messages" in r]
    return [text for text in texts if text.startswith(JUDGE_PROMPTS)]


@pytest.fixture()
def judging_stub() -> Iterator[StubServer]:
    """The workshop's answers, and a judge that grades passages and claims by the words they share."""
    with StubServer(rules(), embedding_dim=64, responder=WordJudge()) as server:
        yield server


def judged_repository(root: Path) -> Path:
    root = repository(root)
    (root / "evals/help.eval.yaml").write_text(JUDGED_SUITE)
    git(root, "commit", "-qam", "judge the retrieved passages")
    git(root, "branch", "-qf", "main")  # main has the judged suite too; the change is the top_k cut alone
    commit_edit(root, "top_k: 3", "top_k: 1")
    return root


def test_judged_context_recall_and_precision_compare_base_and_head_cached_and_priced_apart(
        judging_stub: StubServer, tmp_path: Path) -> None:
    root = judged_repository(tmp_path / "repo")
    report = checked(root, judging_stub)

    [suite] = report.evals.comparisons
    r = suite.retrieval
    assert r is not None and r.base is not None and r.context_precision and r.context_recall
    # top_k 3 -> 1 drops the brake article from pads-distance: its expected answer loses its support
    assert (r.base.context_recall, r.head.context_recall) == (1.0, pytest.approx(2 / 3))
    assert (r.context_recall.moved, r.context_recall.verdict) == (1, "within noise")  # one case: no p below 0.5
    # at base the top passage is relevant and the others not, but for pads-distance (chain and brakes both are);
    # the cut keeps the top one, with its cached verdict: precision rises, on 3 cases too few to say beyond noise
    top3 = sum(1 / math.log2(rank + 1) for rank in (1, 2, 3))
    assert r.base.context_precision == pytest.approx((1 / top3 + 1 / top3 + (1 + 1 / math.log2(3)) / top3) / 3)
    assert (r.head.context_precision, r.context_precision.moved, r.context_precision.verdict) == \
        (1.0, 3, "within noise")
    gates = dict(suite.gates)
    assert not gates["min_context_recall"].passed and gates["min_context_recall"].reason == \
        "context recall 0.67 is below the minimum 0.90"
    assert gates["max_context_recall_drop"].passed and "within noise, not a fall beyond noise" in \
        gates["max_context_recall_drop"].reason  # one case moved: no test could call it
    assert gates["min_context_precision"].passed and "max_context_precision_drop" not in gates
    assert (r.head.precision_judged, r.head.recall_judged) == (3, 3)  # the fixture case keeps its passages, unjudged
    # a judge call per distinct (question, passage), per expected answer, per set of passages; none twice
    asked = judge_requests(judging_stub)
    assert len(asked) == len(set(asked)) == r.head.judge_calls + r.base.judge_calls == 3 + 3 + 3 + 6 + 3
    assert r.head.judge_cost_usd and r.base.judge_cost_usd and r.head.judge_model == "openai/gpt-4o-mini"
    spend = report.summary.spend.judges.usd
    assert spend == pytest.approx(r.head.judge_cost_usd + r.base.judge_cost_usd)  # no answer judge in this suite
    assert r.head.cost_usd is not None and suite.head.new_spend_usd is not None

    line = next(text for text in check.render_markdown(report).splitlines() if text.startswith("**Retrieval:**"))
    assert "judged by openai/gpt-4o-mini: context precision 0.57 → 1.00 over 3 case(s) judged on both sides, " \
           "within noise (p = 0.25); context recall 1.00 → 0.67 over 3 case(s) judged on both sides, " \
           "within noise (p = 1); 18 judge call(s) in this run" in line, line
    comment = check.render_markdown(report).splitlines()
    cases = comment[comment.index(line) + 1:comment.index(line) + 4]
    assert cases == ["- pads-distance: context precision 0.77 → 1.00, context recall 1.00 → 0.00; answer regressed",
                     "- chain: context precision 0.47 → 1.00; answer unchanged",
                     "- brakes: context precision 0.47 → 1.00; answer unchanged"], cases
    results = evals.to_json(report.evals.comparisons, report.base_label, report.head_label, report.evals.skipped)
    jsonschema.validate(results, json.loads((SCHEMAS / "eval-results.schema.json").read_text()))
    judged = results["suites"][0]["retrieval"]
    assert judged["judged_moves"][0] == {"id": "pads-distance", "precision": {"base": pytest.approx(0.765, abs=1e-3),
                                                                              "head": 1.0},
                                         "recall": {"base": 1.0, "head": 0.0}, "answer": "regressed"}
    assert judged["context_recall"]["verdict"] == "within noise" and judged["head"]["recall_judged"] == 3
    html = check.render_html(report)
    assert "judged by openai/gpt-4o-mini" in html and "Judged context precision and recall per suite" in html
    assert "evals/help.eval.yaml: context recall" in html

    judging_stub.reset()
    again = run_promptops(["eval", "--base", "main", "--api-base", judging_stub.base_url], root)
    assert judging_stub.requests == []  # an unchanged question and passage make no judge call
    judged_line = next(text for text in again.stdout.splitlines() if text.startswith("  judged by"))
    assert "context recall 1.00 -> 0.67" in judged_line and "0 judge call(s) in this run, $0" in judged_line
    assert "    judged moved pads-distance: context precision 0.77 -> 1.00, context recall 1.00 -> 0.00; answer " \
           "regressed" in again.stdout.splitlines()


def test_a_suite_asking_for_judged_figures_where_nothing_is_retrieved_is_told_so(
        judging_stub: StubServer, tmp_path: Path) -> None:
    root = judged_repository(tmp_path / "repo")
    prompt = root / "prompts/help.prompt.yaml"
    prompt.write_text(prompt.read_text().replace("retrieval: {config: workshop_kb, into: passages, query: question}\n",
                                                 ""))
    result = run_promptops(["eval", "--no-base", "--api-base", judging_stub.base_url, "--format", "json"], root)
    assert ("evals/help.eval.yaml: retrieval.judge (context_precision, context_recall) not applied: prompt "
            "'workshop.help' retrieves no passages (it has no retrieval: {config, into}), so nothing is retrieved "
            "to judge") in result.json()["skipped"]
    assert judge_requests(judging_stub) == []


def test_lint_names_an_unknown_judged_figure_with_its_file_and_line(tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    (root / "evals/help.eval.yaml").write_text(JUDGED_SUITE.replace("context_recall]", "faithfulness]"))
    result = run_promptops(["lint", "evals/help.eval.yaml"], root)
    assert result.stdout.startswith("evals/help.eval.yaml:2:40: PO113 retrieval.judge[1]: 'faithfulness' is not one "
                                    "of context_precision, context_recall\n"), result.stdout
    (root / "evals/help.eval.yaml").write_text(JUDGED_SUITE.replace("judge: [", "model: openai/gpt-4o, judge: ["))
    assert "retrieval." not in run_promptops(["lint", "evals/help.eval.yaml"], root).stdout  # a model may be named


def test_judge_calls_count_in_the_spend_cap_and_a_case_the_judge_could_not_grade_is_named(
        judging_stub: StubServer, tmp_path: Path) -> None:
    root = judged_repository(tmp_path / "repo")
    result = run_promptops(["eval", "--no-base", "--api-base", judging_stub.base_url, "--max-cost", "0.00001",
                            "--format", "json"], root)
    document = result.json()
    assert judge_requests(judging_stub) == []  # a judge call reserves its worst case: none fits under the cap
    assert ("evals/help.eval.yaml: context precision not judged for 3 case(s) (chain, brakes, pads-distance): "
            "passage 1: not run: the spend cap $1e-05 would be passed") in "\n".join(document["skipped"])
    assert any(reason.startswith("evals/help.eval.yaml: context recall not judged for 3 case(s)")
               for reason in document["skipped"]), document["skipped"]
    head = document["suites"][0]["retrieval"]["head"]
    assert head["context_precision"] is None and head["precision_judged"] == 0 and head["judge_calls"] == 0


def test_a_suite_that_does_not_ask_for_judged_figures_makes_no_judge_call(
        judging_stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    commit_edit(root, "top_k: 3", "top_k: 1")
    report = checked(root, judging_stub)
    r = report.evals.comparisons[0].retrieval
    assert r is not None and r.head.context_precision is None and r.context_recall is None
    assert judge_requests(judging_stub) == [] and "judged by" not in check.render_markdown(report)
    assert "Judged context precision" not in check.render_html(report)


def test_embedding_the_corpus_counts_in_the_spend_cap(stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    commit_edit(root, "top_k: 3", "top_k: 2")
    stub.reset()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        options = EvalOptions(api_base=stub.base_url, max_cost_usd=1e-9)  # less than embedding five articles
        report = run_check(root, CheckOptions(base="main", eval_options=options))
    finally:
        os.chdir(cwd)
    assert not [r for r in stub.requests if "input" in r]  # no embedding call was sent
    problems = [note for note in report.evals.skipped if "spend cap" in note]
    assert len(problems) == 2  # at head, and at main
    assert all("embedding the corpus of 'workshop_kb'" in p and "3 case(s) without 'passages' not sent" in p
               for p in problems)
    assert report.evals.comparisons[0].retrieval is None
    # The three cases that wanted passages, at both refs, were stopped by the cap (not "did not render"); so was
    # the fixture case's own model call, at both.
    capped = [(change.case_id, a.failures[0]) for change in report.evals.comparisons[0].cases
              for side in (change.base, change.head) if side is not None for a in side.attempts
              if a.failure is Failure.SPEND_CAP]
    assert report.evals.capped == len(capped) == 8
    retrieval = [reason for case_id, reason in capped if case_id != "fixture"]
    assert len(retrieval) == 6 and all(
        re.fullmatch(r"not sent: the spend cap stopped retrieval with 'workshop_kb'( at \w+)? for its passages", r)
        for r in retrieval), retrieval
    assert any("the spend cap stopped 8 model calls" in reason for reason in report.verdict.failures)
    assert report.verdict.level == "fail"


def test_a_rerank_the_spend_cap_stops_fails_within_spend_cap_naming_the_retrieval_config(
        stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    commit_edit(root, "retriever: {top_k: 3}", "retriever: {top_k: 4}\nreranker: {model: cohere/rerank-v3.5, top_n: 2}")
    stub.reset()
    # Room for the embeddings (about $0.000004) and the fixture case's answers, not for one $0.002 rerank.
    done = run_promptops(["eval", "--base", "main", "--api-base", stub.base_url, "--max-cost", "0.001",
                          "--format", "json"], root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert [r for r in stub.requests if "input" in r] and not [r for r in stub.requests if "documents" in r]
    [suite] = done.json()["suites"]
    [capped] = [gate for gate in suite["gates"] if gate["gate"] == "within_spend_cap"]
    assert not capped["passed"]
    assert capped["reason"].startswith("the spend cap stopped 3 model call(s), e.g. for case ")
    assert "(not sent: the spend cap stopped retrieval with 'workshop_kb' for its passages)" in capped["reason"]
    head = {case["id"]: case["head"]["attempts"] for case in suite["cases"]}
    assert [a["output"] for a in head["fixture"]] == ["Yes, a lifetime warranty."]  # its own passages: sent
    assert all(a["output"] is None and "spend cap" in a["failures"][0]
               for case_id in ("chain", "brakes", "pads-distance") for a in head[case_id])
    assert not any("does not render" in f for attempts in head.values() for a in attempts for f in a["failures"])
    assert any("reranking a query with cohere/rerank-v3.5 could pass the spend cap" in note
               for note in done.json()["skipped"])


def test_promptops_eval_reranks_through_litellm_and_a_re_run_makes_no_call(stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    commit_edit(root, "retriever: {top_k: 3}", "retriever: {top_k: 4}\nreranker: {model: cohere/rerank-v3.5, top_n: 2}")
    stub.reset()
    first = run_promptops(["eval", "--base", "main", "--api-base", stub.base_url, "--format", "json"], root)
    reranks = [r for r in stub.requests if "documents" in r]
    assert len(reranks) == 3 and all(len(r["documents"]) == 4 for r in reranks)  # a call per retrieved case
    [suite] = json.loads(first.stdout)["suites"]
    retrieval = suite["retrieval"]
    assert (retrieval["base"]["k"], retrieval["head"]["k"]) == (3, 2)
    # head goes first: the corpus in one call, the queries in one, a rerank per case; the base's index is the same
    # (same model and chunking), its queries the same texts: nothing left to call for
    assert (retrieval["head"]["calls"], retrieval["base"]["calls"]) == (1 + 1 + 3, 0)

    # A query's cost: its embedding and the reranker's price per query (cohere/rerank-v3.5: $0.002).
    per_query = retrieval["head"]["query_cost_usd"]
    assert per_query == pytest.approx(0.002, abs=1e-6) and per_query > 0.002
    assert retrieval["base"]["query_cost_usd"] < 1e-6  # no reranker at main: the embedding alone

    stub.reset()
    again = run_promptops(["eval", "--base", "main", "--api-base", stub.base_url, "--format", "json"], root)
    head = json.loads(again.stdout)["suites"][0]["retrieval"]["head"]
    assert stub.requests == [] and head["calls"] == 0
    assert head["query_cost_usd"] == per_query  # every rerank from the cache: still priced
    assert again.returncode == first.returncode


def test_a_base_whose_corpus_cannot_be_read_is_named_and_the_head_still_retrieves(
        stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    git(root, "switch", "-q", "main")
    commit_edit(root, '"../help/*.md"', '"../missing/*.md"')  # main's config points at no file
    git(root, "switch", "-q", "change")
    git(root, "merge", "-q", "--ff-only", "main")
    commit_edit(root, '"../missing/*.md"', '"../help/*.md"')  # the change fixes it
    report = checked(root, stub)

    [note] = [note for note in report.evals.skipped if "missing" in note]
    main = git(root, "rev-parse", "--short=12", "main").strip()
    assert f"retrieval with 'workshop_kb' at {main} failed" in note and "matches no file" in note
    retrieval = report.evals.comparisons[0].retrieval
    assert retrieval is not None and retrieval.base is None and retrieval.head.recall == 1.0


def test_an_edited_document_selects_the_suite_and_re_embeds_only_its_chunk(stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    checked(root, stub, run_all=True)  # main's own run fills the cache and the index
    brakes = root / "help/brakes.md"
    brakes.write_text(brakes.read_text().replace("about every 2000 km", "about every 1500 km"))
    git(root, "commit", "-qam", "Pads last less")
    stub.reset()
    report = checked(root, stub)

    [suite] = report.evals.comparisons  # selected: only a corpus document changed
    embedded = [r["input"] for r in stub.requests if "input" in r]
    assert [len(batch) for batch in embedded] == [1]  # the brakes article's one chunk, nothing else
    assert "1500 km" in embedded[0][0]
    assert {c.case_id for c in suite.with_status(CaseStatus.REGRESSED)} == {"brakes", "pads-distance"}
    retrieval = suite.retrieval
    assert retrieval is not None and retrieval.changes == [] and retrieval.reindex is None


def test_a_pull_request_cannot_point_the_check_at_its_own_index_store(
        stub: StubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An index store's URL may carry a token ($VAR): one the base does not name is refused, never opened."""
    monkeypatch.setenv("PROMPTOPS_TEST_SECRET", "s3cret-token")
    root = repository(tmp_path / "repo")
    commit_edit(root, "index: {name: workshop-v1}",
                'index: {name: workshop-v1, store: chroma, url: "http://127.0.0.1:9/${PROMPTOPS_TEST_SECRET}"}')
    report = checked(root, stub)

    [note] = [note for note in report.evals.skipped if "index.store" in note]
    assert "retrieval with 'workshop_kb' not run: index.store 'chroma' (and its url) is not the base ref's" in note
    assert "s3cret-token" not in note
    retrieval = report.evals.comparisons[0].retrieval
    assert retrieval is None or retrieval.head is None  # nothing retrieved at head


def test_cases_whose_retrieval_fails_are_not_sent_and_make_the_run_incomplete_not_regressed(
        stub: StubServer, tmp_path: Path) -> None:
    """Sent without passages, a case would be an answer to a question it was never asked: a failed embedding call
    must not turn into answer regressions (or, with a lenient template, into passes)."""
    root = repository(tmp_path / "repo")
    commit_edit(root, "top_k: 3", "top_k: 2")
    stub.reset(faults=["400"])  # the head's first call, embedding its corpus: refused, not retried
    try:
        done = run_promptops(["eval", "--base", "main", "--api-base", stub.base_url, "--format", "json"], root)
    finally:
        stub.reset(faults=())  # reset() alone keeps the faults for the next test on this worker's stub
    assert done.returncode == 3, done.stdout + done.stderr  # incomplete: a service failed
    [suite] = done.json()["suites"]
    [gate] = [gate for gate in suite["gates"] if gate["gate"] == "retrieved"]
    assert not gate["passed"] and gate["reason"].startswith("3 case(s) got no passages, e.g. ")
    assert "not sent: retrieval with 'workshop_kb' failed: embedding call to openai/text-embedding-3-small" \
        in gate["reason"]
    cases = {case["id"]: case for case in suite["cases"]}
    for case_id in ("chain", "brakes", "pads-distance"):
        head = cases[case_id]["head"]["attempts"]
        assert head and all(a["failure"] == "no passages" and a["output"] is None for a in head)
        assert cases[case_id]["status"] != "regressed"
        assert all(a["output"] for a in cases[case_id]["base"]["attempts"])  # main retrieved and answered
    assert [a["output"] for a in cases["fixture"]["head"]["attempts"]] == ["Yes, a lifetime warranty."]
    assert any("retrieval with 'workshop_kb' failed" in note and "3 case(s) without 'passages' not sent" in note
               for note in done.json()["skipped"])


def test_a_check_whose_retrieval_fails_says_so_in_its_verdict(stub: StubServer, tmp_path: Path) -> None:
    root = repository(tmp_path / "repo")
    commit_edit(root, "top_k: 3", "top_k: 2")
    stub.reset(faults=["400"])
    try:
        report = checked(root, stub)
    finally:
        stub.reset(faults=())
    assert report.verdict.level == "fail" and report.verdict.exit_code == 3
    assert any(reason.startswith("3 model calls not sent: retrieval with 'workshop_kb' failed: ")
               and reason.endswith(": results are incomplete") for reason in report.verdict.failures), \
        report.verdict.failures
    assert not report.evals.comparisons[0].with_status(CaseStatus.REGRESSED)
