"""The bundled example project: clean under lint, complete, and loadable."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from helpers.cli import run_promptops
from promptops.loader import Loader
from promptops.models import ModelCatalog
from promptops.retrieval.corpus import load_corpus
from promptops.retrieval.settings import RetrievalSettings, filter_matches
from promptops.specs import EvalSuiteSpec

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "support-assistant"
PROMPT_IDS = {"support.answer", "support.classify", "support.summarize_ticket", "support.draft_reply"}
FINE_TUNED = "openai/ft:gpt-4o-mini-2024-07-18:acme:ticket-summary:B7x2kQ9p"


def promptops(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    return run_promptops(args, cwd=REPO, env=env)


def load(relative: str) -> Any:
    loaded = Loader(EXAMPLE).load(EXAMPLE / relative)
    assert loaded.findings == []
    return loaded.spec


def test_example_lints_clean() -> None:
    done = promptops("lint", "--strict", "examples/support-assistant")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All clean" in done.stdout


def test_example_json_report_has_no_findings() -> None:
    done = promptops("lint", "--format", "json", "examples/support-assistant")
    report = json.loads(done.stdout)
    assert done.returncode == 0
    assert report["findings"] == []
    assert report["summary"] == {"errors": 0, "warnings": 0}
    assert report["files_checked"] == 11  # config, 4 prompts, 1 retrieval config, 5 suites


def test_examples_folder_lints_clean() -> None:
    done = promptops("lint", "--strict", "examples/")
    assert done.returncode == 0, done.stdout
    assert "All clean" in done.stdout


def test_answer_suite_reads_its_dataset() -> None:
    suite = load("evals/answer.eval.yaml")
    assert isinstance(suite, EvalSuiteSpec)
    assert suite.dataset == "data/support_answer.jsonl"
    from_dataset = [c for c in suite.cases if c.origin.path.name == "support_answer.jsonl"]
    assert len(from_dataset) == 15
    assert len(suite.cases) == 17  # plus two inline cases
    assert len({c.id for c in suite.cases}) == len(suite.cases)
    refusals = [c.id for c in suite.cases if any(a.type == "refusal" for a in c.asserts)]
    assert refusals == ["out-of-scope-weather", "injection-in-question"]


def test_the_help_centre_corpus_backs_the_retrieved_suite_and_agrees_with_the_fixtures() -> None:
    settings = RetrievalSettings.from_spec(load("retrieval/support_kb.retrieval.yaml"))
    assert settings.corpus is not None
    corpus = load_corpus(settings.corpus, EXAMPLE / "retrieval", EXAMPLE)
    assert corpus.problems == ()
    public = {d.id: d.text for d in corpus.documents if filter_matches(d.metadata, settings.filters)}
    # the filters keep the agents' article and the German one out
    assert {d.id for d in corpus.documents} - set(public) == {"kb/internal/retention-offers.md",
                                                               "kb/de/rueckerstattungen.md"}
    assert 12 <= len(public) <= 20
    retrieved = load("evals/answer_retrieved.eval.yaml")
    assert isinstance(retrieved, EvalSuiteSpec)
    assert all("passages" not in case.vars for case in retrieved.cases)  # the retriever fills them all
    assert {source for case in retrieved.cases for source in case.expected_sources} <= set(public)
    # what the fixture suite expects from its hand-picked passages, the articles say too
    fixtures = load("evals/answer.eval.yaml")
    facts = {case.expected for case in fixtures.cases if isinstance(case.expected, str)} - {"don't know"}
    text = "\n".join(public.values()).lower()
    assert len(facts) >= 10 and [fact for fact in facts if fact.lower() not in text] == []


def test_classify_suite_reads_its_dataset() -> None:
    suite = load("evals/classify.eval.yaml")
    assert isinstance(suite, EvalSuiteSpec)
    assert len(suite.cases) == 14
    for case in suite.cases:
        assert set(case.vars) == {"subject", "body", "channel"}
        assert set(case.expected) == {"category", "priority", "sentiment", "needs_human"}


def test_every_prompt_has_a_suite_and_traffic_figures() -> None:
    config = load("promptops.yaml")
    prompts = {load(p.relative_to(EXAMPLE).as_posix()).id for p in (EXAMPLE / "prompts").glob("*.prompt.yaml")}
    suites = {load(p.relative_to(EXAMPLE).as_posix()).prompt for p in (EXAMPLE / "evals").glob("*.eval.yaml")}
    assert prompts == suites == PROMPT_IDS
    assert set(config.calls_per_day) == PROMPT_IDS
    assert config.environments == ["dev", "staging", "prod"]


def test_fine_tuned_model_is_priced_by_the_project_not_by_litellm() -> None:
    config = load("promptops.yaml")
    summarize = load("prompts/summarize_ticket.prompt.yaml")
    assert summarize.model == FINE_TUNED
    assert ModelCatalog().get(FINE_TUNED) is None  # so the pricing: entry is what makes it known
    info = ModelCatalog(config.pricing).get(FINE_TUNED)
    assert info is not None and info.price.input == pytest.approx(0.30e-6)
