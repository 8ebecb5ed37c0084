"""Prices: the one formula, ``pricing:`` overrides, and litellm's price map read textually as litellm reads it.

The commit hook reads the map's text (``pricing.PriceMap``) because parsing 3 MB of JSON, or importing
litellm, costs more than the rest of the hook. That read depends on the file's layout; here it is
checked against ``json.load`` of the same file for every entry, and against litellm's own ``model_cost``
and ``cost_per_token`` for a sample that holds every kind of price, so that a litellm upgrade that lays
the file out otherwise, or renames a price's key, fails here rather than turning prices into "unknown".
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from promptops.pricing import LITELLM_KEYS, PRICE_KINDS, Price, PriceMap, litellm_price_map, price_map

ROOT = Path(__file__).resolve().parents[2]
needs_map = pytest.mark.skipif(litellm_price_map() is None, reason="needs litellm's bundled price map")
# Chat models whose per-token prices litellm applies as they stand (no per-character or per-second billing).
PLAIN_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "claude-sonnet-4-5", "claude-haiku-4-5")


def map_as_json() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(litellm_price_map().read_text(encoding="utf-8"))  # type: ignore[union-attr]
    data.pop("sample_spec")
    return data


def misread(prices: PriceMap, data: dict[str, Any]) -> list[str]:
    """The keys whose entry the textual read does not decode as json.load does."""
    return [key for key in data if prices.entry(key) != data[key]]


def sample(data: dict[str, Any]) -> list[str]:
    """Every 50th model, the first few with each kind of price, and the keys the file does not indent like the
    rest (not the one top-level entry that is not a model, which litellm drops: it names no provider)."""
    text = litellm_price_map().read_text(encoding="utf-8")  # type: ignore[union-attr]
    unindented = {json.loads(key) for key in re.findall(r'\n("[^"\n]*"): \{', text)}
    models = [key for key, entry in data.items() if "litellm_provider" in entry]
    keys = models[::50] + [key for key in models if key in unindented]
    for litellm_key in LITELLM_KEYS.values():
        keys += [key for key in models if isinstance(data[key].get(litellm_key), (int, float))][:5]
    return sorted(set(keys) | set(PLAIN_MODELS))


# -- the formula ------------------------------------------------------------------------

GPT_4O = Price(input=2.5e-6, output=1e-5, cached_input=1.25e-6, batch_input=1.25e-6, batch_output=5e-6)


def test_a_call_costs_its_input_and_output_tokens_at_their_prices() -> None:
    # Exactly the expression every figure was computed with before the formula had one home.
    assert GPT_4O.call_cost(1_234, 321.5) == 1_234 * 2.5e-6 + 321.5 * 1e-5
    assert GPT_4O.call_cost(0, 0) == 0.0


def test_cached_input_is_priced_at_the_cached_input_price_else_as_input() -> None:
    assert GPT_4O.call_cost(1_000, 100, cached_input_tokens=800) == pytest.approx(200 * 2.5e-6 + 800 * 1.25e-6 + 1e-3)
    assert GPT_4O.call_cost(1_000, 0, cached_input_tokens=5_000) == pytest.approx(1_000 * 1.25e-6)  # at most all input
    no_cached_price = Price(input=1e-6, output=2e-6)
    assert no_cached_price.call_cost(1_000, 0, cached_input_tokens=800) == pytest.approx(1e-3)


def test_batch_calls_are_priced_at_the_batch_prices_else_as_any_call() -> None:
    assert GPT_4O.call_cost(1_000, 100, batch=True) == pytest.approx(1_000 * 1.25e-6 + 100 * 5e-6)
    assert Price(input=1e-6, output=2e-6).call_cost(1_000, 100, batch=True) == pytest.approx(1e-3 + 2e-4)


def test_an_unknown_price_gives_an_unknown_cost_never_zero() -> None:
    assert Price(input=None, output=1e-5).call_cost(1_000, 100) is None
    assert Price(input=1e-6, output=None).call_cost(1_000, 100) is None
    assert not Price(input=1e-6, output=None).complete and Price(input=0.0, output=0.0).complete
    # An embedding has no output: its model needs no output price (litellm's map gives some none).
    assert Price(input=2e-8, output=None).call_cost(500, 0) == 500 * 2e-8


def test_a_price_per_query_prices_a_rerank_whatever_its_tokens() -> None:
    rerank = Price(input=0.0, output=0.0, per_query=0.002)
    assert rerank.call_cost(0, 0, queries=1) == 0.002 and rerank.call_cost(0, 0, queries=3) == pytest.approx(0.006)
    assert Price(input=None, output=None, per_query=0.001).call_cost(0, 0, queries=1) == 0.001  # no token price needed
    assert Price(input=1e-6, output=None, per_query=0.001).call_cost(1_000, 0, queries=1) == pytest.approx(0.002)
    assert GPT_4O.call_cost(0, 0, queries=1) is None  # no price per query: unknown, never free
    assert rerank.call_cost(500, 0) == 0.0  # no query counted: the per-query price is not charged


# -- pricing: in promptops.yaml ----------------------------------------------------------

def test_pricing_overrides_are_per_million_tokens_and_name_every_kind_of_price() -> None:
    override = {"input": 0.6, "output": 2.4, "cached_input": 0.3, "batch_input": 0.3, "batch_output": 1.2,
                "context_window": 128_000}
    assert Price.from_override(override) == Price(0.6 / 1e6, 2.4 / 1e6, 0.3 / 1e6, 0.3 / 1e6, 1.2 / 1e6)
    assert Price.from_override({"input": 1, "output": 2}) == Price(1e-6, 2e-6)
    # A price per query is per call, in USD as it stands: not per million.
    assert Price.from_override({"per_query": 0.002}) == Price(None, None, per_query=0.002)


@needs_map
def test_a_rerank_model_s_price_per_query_is_found_without_its_provider_prefix() -> None:
    from promptops.models import ModelCatalog

    info = ModelCatalog().get("cohere/rerank-v3.5")  # keyed rerank-v3.5 in litellm's map
    assert info is not None and info.price.per_query == 0.002
    assert info.price.call_cost(0, 0, queries=1) == 0.002
    overridden = ModelCatalog({"cohere/rerank-v3.5": {"per_query": 0.004}}).get("cohere/rerank-v3.5")
    assert overridden is not None and overridden.price.call_cost(0, 0, queries=1) == 0.004


def test_the_config_schema_accepts_every_kind_of_price_under_pricing() -> None:
    schema = json.loads((ROOT / "schemas" / "config.schema.json").read_text(encoding="utf-8"))
    keys = set(schema["properties"]["pricing"]["additionalProperties"]["properties"])
    assert keys - {"context_window", "max_output_tokens"} == set(PRICE_KINDS) == set(LITELLM_KEYS)


def test_a_reranker_under_pricing_needs_only_its_price_per_query() -> None:
    import jsonschema

    schema = json.loads((ROOT / "schemas" / "config.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors({"pricing": {"my/reranker": {"per_query": 0.002}}})) == []
    [missing] = validator.iter_errors({"pricing": {"my/model": {"output": 1}}})  # a chat model needs both prices
    assert missing.message == "'input' is a required property"


# -- litellm's price map, read both ways ---------------------------------------------------

@needs_map
def test_the_textual_read_decodes_every_entry_as_json_load_does() -> None:
    """In litellm 1.106.2 one key (claude-haiku-5-5) is not indented like the others, and is read all the same."""
    data = map_as_json()
    assert misread(price_map(), data) == []
    assert price_map().providers() == {key: entry.get("litellm_provider", "") for key, entry in data.items()}
    assert price_map().entry("sample_spec") is None  # the map's documentation of its fields, not a model


@needs_map
def test_a_map_laid_out_otherwise_is_caught(tmp_path: Path) -> None:
    """What the test above guards against: the same map written with another indentation reads as empty."""
    data = map_as_json()
    keys = sample(data)
    relaid = PriceMap(json.dumps({key: data[key] for key in keys}, indent=2))
    assert misread(relaid, {key: data[key] for key in keys}) == keys


@needs_map
def test_prices_read_from_the_text_are_the_prices_litellm_loads() -> None:
    from promptops.evals.runner import import_litellm

    model_cost = import_litellm().model_cost
    data = map_as_json()
    keys = sample(data)
    ours = {key: Price.from_price_map(price_map().entry(key) or {}) for key in keys}
    assert ours == {key: Price.from_price_map(model_cost[key]) for key in keys}
    for kind in PRICE_KINDS:  # a key litellm renames leaves a kind unknown everywhere: caught here
        assert any(getattr(price, kind) for price in ours.values()), kind


@needs_map
@pytest.mark.parametrize("model", PLAIN_MODELS)
def test_what_a_call_costs_is_what_litellm_computes(model: str) -> None:
    from promptops.evals.runner import import_litellm

    litellm = import_litellm()
    price = Price.from_price_map(price_map().entry(model) or {})
    for tokens in ({"input_tokens": 1_000, "output_tokens": 100}, {"input_tokens": 3_000, "output_tokens": 0}):
        expected = sum(litellm.cost_per_token(model=model, prompt_tokens=tokens["input_tokens"],
                                              completion_tokens=tokens["output_tokens"]))
        assert price.call_cost(**tokens) == pytest.approx(expected, rel=1e-12)
    cached = sum(litellm.cost_per_token(model=model, prompt_tokens=1_000, completion_tokens=100,
                                        cache_read_input_tokens=800))
    assert price.call_cost(1_000, 100, cached_input_tokens=800) == pytest.approx(cached, rel=1e-12)
