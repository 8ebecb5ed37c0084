"""The bundled example's retrieval-backed suite, retrieved for real: its help-centre corpus indexed through
litellm and the stub's /v1/embeddings, each case's query searched and reranked (the rerank calls of a suite
in flight together), and every expected source found at the shipped settings."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from promptops.config import load_workspace
from promptops.evals.runner import RunSettings, SpendBudget
from promptops.resultcache import ResultCache
from promptops.retrieval.evalcases import RetrievedPassages
from promptops.testing import StubServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-assistant"
SUITE = "answer_retrieved.eval.yaml"


def test_every_case_gets_passages_holding_its_expected_sources_and_reranks_go_out_together(tmp_path: Path) -> None:
    project = shutil.copytree(EXAMPLE, tmp_path / "project", ignore=shutil.ignore_patterns(".promptops"))
    workspace = load_workspace(project)
    [suite] = [s for s in workspace.suites if s.source.path.name == SUITE]
    with StubServer(latency_ms=250) as slow, ResultCache(tmp_path / "cache.db") as cache:
        settings = RunSettings(concurrency=4, api_base=slow.base_url, api_key="stub")
        filled = asyncio.run(RetrievedPassages().fill(suite, workspace, cache, settings, SpendBudget(None)))
        reranks = [request for request in slow.requests if "documents" in request]
        in_flight = slow.max_in_flight  # one request at a time but for the reranks: the corpus, then the queries

    run = filled.retrieval
    assert run is not None and run.k == 4 and run.kept == 0
    assert all(case.vars["passages"] for case in filled.suite.cases if case.expected_sources)
    assert {case_id: score.found == score.expected for case_id, score in run.cases.items() if score.expected} == {
        case.id: True for case in suite.cases if case.expected_sources}
    # the agents' article is the best match for this question, but the filters keep it out
    internal = next(case for case in filled.suite.cases if case.id == "retention-offer-stays-internal")
    assert not any("20%" in passage for passage in internal.vars["passages"])
    assert len(reranks) == len(suite.cases) and in_flight >= 2  # up to 4 (concurrency); one after the other: 1
