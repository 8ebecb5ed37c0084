"""What retrieval adds to each call of a retrieval-backed prompt: the query's embedding (the median query of the
eval cases, in the embedding model's tokens, at its input price) and the reranker's price per query. The model
call stays ``cost_per_call`` (budgets judge it); the monthly figure counts both.

Prices here come from ``pricing:`` at $1 a token (input: 1,000,000 per million) so that a cost reads as a token
count; the token counts are cl100k_base's (text-embedding-3-small's encoding), written out by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from promptops.config import load_workspace
from promptops.estimate.cost import Estimator
from promptops.model.cost import Estimate
from promptops.models import ModelCatalog
from promptops.specs import PromptSpec

CONFIG = """\
usage:
  help.answer: {calls_per_day: 100}
pricing:
  openai/gpt-4o-mini: {input: 0, output: 0}
  openai/text-embedding-3-small: {input: 1000000, output: 0}
  acme/rerank-1: {per_query: 0.5}
"""
RETRIEVAL = """\
id: help_kb
embedding: {model: EMBEDDING, dimensions: 64}
chunking: {size: 200, overlap: 0, unit: UNIT}
retriever: {top_k: 4}
RERANKER
"""
PROMPT = """\
id: help.answer
model: {name: openai/gpt-4o-mini, params: {max_tokens: 10}}
retrieval: {config: help_kb, into: passagesQUERY}
inputs:
  type: object
  properties: {question: {type: string}, topic: {type: string}, passages: {type: array, items: {type: string}}}
messages:
  - role: user
    content: "{% for p in passages %}{{ p }}{% endfor %}{{ topic }} {{ question }}"
"""
# cl100k_base: 7, 3 and 12 tokens; the median is 7
SUITE = """\
prompt: help.answer
cases:
  - {id: reset, vars: {question: "How do I reset my password?", topic: "account security settings"}}
  - {id: short, vars: {question: "Refunds please?", topic: "billing"}}
  - {id: long, vars: {question: "Can I move my yearly plan to another workspace without losing data?", topic: "x"}}
"""
MEDIAN_QUESTION_TOKENS = 7
TOPIC_TOKENS = (3, 1, 1)  # "account security settings", "billing", "x": the median is 1


def project(root: Path, *, embedding: str = "openai/text-embedding-3-small", unit: str = "tokens",
            reranker: str = "", query: str = "", retrieves: bool = True) -> Path:
    prompt = PROMPT.replace("QUERY", f", query: {query}" if query else "")
    if not retrieves:
        prompt = prompt.replace("retrieval: {config: help_kb, into: passages}\n", "")
    files = {
        "promptops.yaml": CONFIG,
        "retrieval/help.retrieval.yaml": RETRIEVAL.replace("EMBEDDING", embedding).replace("UNIT", unit)
        .replace("RERANKER", f"reranker: {{model: {reranker}, top_n: 2}}" if reranker else ""),
        "prompts/answer.prompt.yaml": prompt,
        "evals/answer.eval.yaml": SUITE,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def estimate(root: Path) -> Estimate:
    return Estimator().workspace(load_workspace(root))["help.answer"]


def test_the_query_embedding_is_the_median_query_at_the_embedding_input_price(tmp_path: Path) -> None:
    answer = estimate(project(tmp_path))
    assert answer.retrieval_cost_per_call == pytest.approx(MEDIAN_QUESTION_TOKENS)
    assert answer.cost_per_call == 0  # the model call alone, priced at 0 here
    assert answer.monthly_cost == pytest.approx(MEDIAN_QUESTION_TOKENS * 100 * 30)
    assert answer.retrieval_basis == ("the query embedded with openai/text-embedding-3-small (7 tokens, the median "
                                      "over 3 samples' question)")
    assert answer.warnings == ()


def test_a_reranker_adds_its_price_per_query(tmp_path: Path) -> None:
    answer = estimate(project(tmp_path, reranker="acme/rerank-1"))
    assert answer.retrieval_cost_per_call == pytest.approx(MEDIAN_QUESTION_TOKENS + 0.5)
    assert answer.retrieval_basis.endswith(", and a rerank by acme/rerank-1 ($0.5 a query)")
    assert answer.monthly_cost == pytest.approx((MEDIAN_QUESTION_TOKENS + 0.5) * 100 * 30)
    assert answer.retrieval_chunks == 2  # the reranker's top_n fills the prompt


def test_a_reranker_priced_by_litellms_map_costs_its_input_cost_per_query(tmp_path: Path) -> None:
    answer = estimate(project(tmp_path, reranker="cohere/rerank-v3.5"))
    per_query = ModelCatalog().get("cohere/rerank-v3.5").price.per_query
    assert per_query == pytest.approx(0.002)
    assert answer.retrieval_cost_per_call == pytest.approx(MEDIAN_QUESTION_TOKENS + per_query)


def test_an_unknown_embedding_price_makes_the_retrieval_and_monthly_cost_unknown_with_a_warning(
        tmp_path: Path) -> None:
    answer = estimate(project(tmp_path, embedding="acme/embed-unknown", reranker="acme/rerank-1"))
    assert answer.retrieval_cost_per_call is None and answer.monthly_cost is None
    assert answer.cost_per_call == 0  # the model call is still known
    assert ("embedding model 'acme/embed-unknown' has no known input price: retrieval cost unknown; add it under "
            "pricing: in promptops.yaml") in answer.warnings


def test_a_reranker_without_a_price_per_query_makes_the_retrieval_cost_unknown(tmp_path: Path) -> None:
    answer = estimate(project(tmp_path, reranker="acme/rerank-unpriced"))
    assert answer.retrieval_cost_per_call is None and answer.monthly_cost is None
    assert any(w.startswith("reranker 'acme/rerank-unpriced' has no known price per query") for w in answer.warnings)
    assert "(no known price)" in answer.retrieval_basis


def test_chunking_in_characters_still_prices_the_query_in_tokens(tmp_path: Path) -> None:
    answer = estimate(project(tmp_path, unit="characters"))
    assert answer.retrieval_cost_per_call == pytest.approx(MEDIAN_QUESTION_TOKENS)  # not its 27 characters
    assert answer.retrieval_tokens == 4 * 50  # the chunks the prompt receives: 200 characters, about 50 tokens


def test_retrieval_query_names_the_input_whose_embedding_is_priced(tmp_path: Path) -> None:
    answer = estimate(project(tmp_path, query="topic"))
    assert answer.retrieval_cost_per_call == pytest.approx(sorted(TOPIC_TOKENS)[1])
    assert answer.retrieval_basis.endswith("over 3 samples' topic)")


def test_a_prompt_that_retrieves_nothing_pays_no_retrieval(tmp_path: Path) -> None:
    answer = estimate(project(tmp_path, retrieves=False))
    assert (answer.retrieval_cost_per_call, answer.retrieval_basis) == (0, "")


def test_a_missing_retrieval_config_makes_the_retrieval_cost_unknown(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "retrieval/help.retrieval.yaml").unlink()
    answer = estimate(root)
    assert answer.retrieval_cost_per_call is None and answer.monthly_cost is None
    assert ("retrieval config 'help_kb' not found: retrieved chunks not counted, retrieval cost unknown"
            in answer.warnings)


def _prompt(query: str | None) -> PromptSpec:
    retrieval = {"config": "kb", "into": "passages", **({"query": query} if query else {})}
    return PromptSpec(id="p", model="m", params={}, messages=(), inputs={}, raw={"retrieval": retrieval},
                      source=None, retrieval_config="kb", retrieval_into="passages")  # type: ignore[arg-type]


@pytest.mark.parametrize("query, variables, chosen", [
    ("topic", {"question": "q", "topic": "t"}, "topic"),
    ("topic", {"question": "q"}, "question"),  # the named input missing: question, as the eval has always done
    ("topic", {"text": "t"}, None),  # named, and neither it nor question: no query (the eval says so)
    (None, {"passages": "p", "body": "b", "question": "q"}, "question"),
    (None, {"passages": "p", "count": 3, "body": "b"}, "body"),  # the first text input but retrieval.into
    (None, {"passages": "p", "count": 3}, None),
])
def test_the_query_input_is_one_choice_for_the_eval_and_the_estimate(query: str | None, variables: dict[str, object],
                                                                     chosen: str | None) -> None:
    from promptops.retrieval.evalcases import query_of
    from promptops.specs import EvalCase

    prompt = _prompt(query)
    assert prompt.query_input(variables) == chosen
    case = EvalCase(id="c", vars=variables, expected=None, asserts=(), origin=None, path=())  # type: ignore[arg-type]
    if chosen is None:
        with pytest.raises(ValueError, match="case 'c' has no text input"):
            query_of(prompt, case)
    else:
        assert query_of(prompt, case) == variables[chosen]


def test_two_refs_that_differ_only_in_the_rerankers_price_are_estimated_apart(tmp_path: Path) -> None:
    root = project(tmp_path, reranker="acme/rerank-1")
    base = load_workspace(root)
    (root / "promptops.yaml").write_text(CONFIG.replace("per_query: 0.5", "per_query: 0.25"))
    head = load_workspace(root)  # the same root, cases and files as the base: only the price differs
    at_base, at_head = Estimator().workspaces([base, head])
    assert at_base["help.answer"].retrieval_cost_per_call == pytest.approx(MEDIAN_QUESTION_TOKENS + 0.5)
    assert at_head["help.answer"].retrieval_cost_per_call == pytest.approx(MEDIAN_QUESTION_TOKENS + 0.25)
