"""The judged-retrieval verdict against a seeded noisy judge, through litellm and the stub server: per trial,
40 cases of four passages, three in four given other passages at head, a judge (the stub's WordJudge) wrong 20%
of the time, a fresh cache; base and head judged as an eval run judges them (head first, then base, one cache,
so a passage both sides hold gets one verdict), then ``stats.judged_change``.

Passages as good as the old ones: no more false alarms on either figure than a 2.5% rate gives with 99%
certainty (1 in 6 trials, 2 in 12); measured over 40 trials: 2 on precision, 1 on recall. Passages that lost
what the question needs: caught in at least 9 of 10 (measured: every one of 6). PROMPTOPS_VERDICT_TRIALS sets
the trials (default 6: each makes 360 judge calls through litellm, about 2 s). The same protocol, without HTTP
and over 400 trials, is in tests/evals/test_verdict_simulation.py.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptops.evals import stats
from promptops.evals.context import CONTEXT_PRECISION, CONTEXT_RECALL, ContextCase, ContextVerdicts, judge_contexts
from promptops.evals.runner import RunSettings
from promptops.model.evals import CaseRetrieval, Verdict
from promptops.models import ModelCatalog
from promptops.resultcache import ResultCache
from promptops.testing import StubServer, WordJudge

TRIALS = int(os.environ.get("PROMPTOPS_VERDICT_TRIALS", "6"))
CASES, ERROR = 40, 0.2


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


def suite(seed: int, worse: bool) -> tuple[list[ContextCase], list[ContextCase]]:
    """Base and head cases: case i asks about "topic{i}"; a passage is relevant when it names the topic, and the
    expected answer's one claim is held by the passage at rank 4 alone."""
    rng = random.Random(seed)
    base, head = [], []
    for i in range(CASES):
        question = f"What is the limit for topic{i}?"
        relevant = [rng.random() < 0.5 for _ in range(4)]
        relevant[3] = True  # the passage holding the answer
        passages = [f"Topic{i} note {rank}." if good else f"Unrelated shelf {i} item {rank}."
                    for rank, good in enumerate(relevant)]
        passages[3] = f"Topic{i} limit is {i}00 units, note 3."
        expected = f"Topic{i} limit is {i}00 units."
        base.append(ContextCase(f"c{i}", question, passages, expected))
        if i % 4:  # three cases in four: other passages at ranks 1-3, as good or worse
            passages = passages[:1] + [(f"Shelf {i} misc {rank}." if worse else
                                        text.replace("note", "remark") if f"Topic{i}" in text else f"Other {i} {rank}.")
                                       for rank, text in enumerate(passages[1:], start=1)]
        head.append(ContextCase(f"c{i}", question, passages, expected))
    return base, head


def trial(stub: StubServer, seed: int, worse: bool, cache_path: Path) -> tuple[Verdict, Verdict, int]:
    """The verdicts on precision and recall, and the judge calls made."""
    stub.reset(responder=WordJudge(error_rate=ERROR, seed=seed))
    settings = RunSettings(api_base=stub.base_url, api_key="stub", retries=0, seed=seed, concurrency=16)
    base, head = suite(seed, worse)
    kinds = (CONTEXT_PRECISION, CONTEXT_RECALL)
    with ResultCache(cache_path) as cache:
        judged_head = asyncio.run(judge_contexts(head, kinds, "openai/gpt-4o-mini", "p", cache, settings,
                                                 ModelCatalog()))
        judged_base = asyncio.run(judge_contexts(base, kinds, "openai/gpt-4o-mini", "p", cache, settings,
                                                 ModelCatalog()))

    def figures(verdicts: ContextVerdicts, case_id: str) -> CaseRetrieval:
        return CaseRetrieval("q", (), (), (), None, relevant=verdicts.relevant[case_id],
                             supported=verdicts.supported[case_id])

    pairs = [(figures(judged_base, case.case_id), figures(judged_head, case.case_id)) for case in head]
    precision = stats.judged_change([(b.context_precision or 0.0, h.context_precision or 0.0) for b, h in pairs])
    recall = stats.judged_change([(b.context_recall or 0.0, h.context_recall or 0.0) for b, h in pairs])
    return precision.verdict, recall.verdict, judged_head.spend.calls + judged_base.spend.calls


def allowed_alarms(trials: int, rate: float = stats.ALPHA / 2) -> int:
    """The fewest false alarms k such that more than k, at ``rate`` a trial, has less than a 1% chance."""
    k, below = 0, (1 - rate) ** trials
    while 1 - below >= 0.01:
        k += 1
        below += math.comb(trials, k) * rate ** k * (1 - rate) ** (trials - k)
    return k


def test_other_passages_as_good_are_rarely_called_a_regression(stub: StubServer, tmp_path: Path) -> None:
    verdicts = [trial(stub, seed, False, tmp_path / f"same{seed}.db") for seed in range(TRIALS)]
    alarms = [sum(v[figure] == "regression" for v in verdicts) for figure in (0, 1)]
    assert max(alarms) <= allowed_alarms(TRIALS), f"false alarms (precision, recall): {alarms} in {TRIALS} trials"
    # head: a call a passage, a claims call and a verdicts call a case; base: only the changed cases' three new
    # passages and their verdicts (their claims, and everything of the unchanged cases, come from the cache)
    assert all(calls == CASES * 6 + CASES * 3 // 4 * 4 for _, _, calls in verdicts), [v[2] for v in verdicts]


def test_passages_that_lost_the_answer_are_caught(stub: StubServer, tmp_path: Path) -> None:
    verdicts = [trial(stub, seed, True, tmp_path / f"worse{seed}.db") for seed in range(TRIALS)]
    caught = [sum(v[figure] == "regression" for v in verdicts) for figure in (0, 1)]
    assert min(caught) >= TRIALS * 9 // 10, f"caught (precision, recall): {caught} of {TRIALS} trials"
