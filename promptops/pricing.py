"""Prices: what a model's tokens cost, where that is read, and the one formula for what a call costs.

A price comes from the price map that ships inside the installed litellm package, read as a data file
(importing litellm costs seconds and may touch the network; the commit hook must not), or from
``pricing:`` in promptops.yaml, which adds and overrides entries, in USD per million tokens (a price per
call, such as a reranker's per query, in USD as it stands).

The map is about 3 MB of JSON: it is read once a process and a model's entry is found by its key in
the text and decoded alone. That depends on the file's layout (top-level keys at the start of a
line); tests/estimate/test_pricing.py reads every entry both ways, textually and with ``json.load``, and a sample
of models through litellm itself, so a litellm release that changes the layout fails there, not in a figure.

A new kind of price is a field of ``Price`` and a row of ``LITELLM_KEYS`` (its key in litellm's map;
its key under ``pricing:`` is the field's name, in schemas/config.schema.json; a price per call rather
than per token also in ``PER_CALL_KINDS``), used by ``call_cost``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

PRICE_MAP_NAME = "model_prices_and_context_window_backup.json"
PER_MILLION = 1e6  # pricing: in promptops.yaml is in USD per million tokens; a Price is per token
# Top-level keys start a line, indented by four spaces (in litellm 1.106.2 one of them by none).
_TOP_LEVEL_INDENTS = ("\n    ", "\n")
# A top-level key of the price map, or the provider line of its entry.
_KEY_OR_PROVIDER = re.compile(r'\n(?:    )?("(?:[^"\\\n]|\\.)*"): \{|\n        "litellm_provider": ("[^"\n]*")')
_NOT_A_MODEL = "sample_spec"  # the map's first entry documents its fields


@dataclass(frozen=True)
class Price:
    """USD per token of each kind (``per_query``: per call); None where unknown."""

    input: float | None
    output: float | None
    cached_input: float | None = None  # input the provider served from its prompt cache (default: the input price)
    batch_input: float | None = None  # through the provider's batch API (default: the input price)
    batch_output: float | None = None  # (default: the output price)
    per_query: float | None = None  # a call priced as a whole, such as a rerank (litellm: input_cost_per_query)

    @property
    def complete(self) -> bool:
        """Both prices a chat call needs are known."""
        return self.input is not None and self.output is not None

    def call_cost(self, input_tokens: int, output_tokens: float, cached_input_tokens: int = 0,
                  batch: bool = False, queries: int = 0) -> float | None:
        """What one call costs, in USD; None when a price it needs is unknown (output only if it has output).

        Cached input tokens (a part of ``input_tokens``) are priced at the cached-input price, batch calls
        at the batch prices, where the model has them, else as any input or output. ``queries`` are priced
        at the per-query price (a rerank: one query, no tokens, so it needs no token price).
        """
        if queries:
            if self.per_query is None:
                return None
            if not input_tokens and not output_tokens:
                return queries * self.per_query
            tokens = self.call_cost(input_tokens, output_tokens, cached_input_tokens, batch)
            return None if tokens is None else tokens + queries * self.per_query
        input_price = self.batch_input if batch and self.batch_input is not None else self.input
        output_price = self.batch_output if batch and self.batch_output is not None else self.output
        if input_price is None:
            return None
        cached = min(max(cached_input_tokens, 0), input_tokens)
        cached_price = self.cached_input if self.cached_input is not None else input_price
        cost = (input_tokens - cached) * input_price + cached * cached_price
        if not output_tokens:
            return cost  # an embedding: no output, and often no output price
        return None if output_price is None else cost + output_tokens * output_price

    @classmethod
    def from_price_map(cls, entry: dict[str, Any]) -> Price:
        """The prices of one entry of litellm's price map."""
        return cls(**{kind: _number(entry.get(key)) for kind, key in LITELLM_KEYS.items()})

    @classmethod
    def from_override(cls, override: dict[str, Any]) -> Price:
        """The prices of one model under ``pricing:`` (per million tokens; a price per call as it stands)."""
        return cls(**{kind: _number(override.get(kind)) if kind in PER_CALL_KINDS else _per_token(override.get(kind))
                      for kind in PRICE_KINDS})


# Each kind of price -> its key in litellm's price map.
LITELLM_KEYS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cached_input": "cache_read_input_token_cost",
    "batch_input": "input_cost_per_token_batches",
    "batch_output": "output_cost_per_token_batches",
    "per_query": "input_cost_per_query",
}
PRICE_KINDS = tuple(field.name for field in fields(Price))  # and their keys under pricing:
PER_CALL_KINDS = frozenset({"per_query"})  # USD per call, not per token: under pricing: not per million


def litellm_price_map() -> Path | None:
    """The installed litellm's price map, found without importing litellm."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / PRICE_MAP_NAME
    return path if path.is_file() else None


def litellm_version() -> str:
    """The installed litellm's version, from its dist-info folder beside the package (importlib.metadata
    scans every installed distribution: more time than the rest of a commit hook's imports)."""
    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.origin:
        infos = list(Path(spec.origin).parent.parent.glob("litellm-*.dist-info"))
        if len(infos) == 1:
            return infos[0].name[len("litellm-"):-len(".dist-info")]
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("litellm")
    except PackageNotFoundError:
        return "unknown"


class PriceMap:
    """litellm's price map as text: an entry is decoded when it is asked for, once."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._entries: dict[str, dict[str, Any] | None] = {}
        self._providers: dict[str, str] | None = None

    def entry(self, key: str) -> dict[str, Any] | None:
        """One model's entry, by its key in the map (None for a key it lacks, and for the sample entry)."""
        if key not in self._entries:
            self._entries[key] = self._decode(key) if key != _NOT_A_MODEL else None
        return self._entries[key]

    def _decode(self, key: str) -> dict[str, Any] | None:
        """Decode one top-level entry without parsing the rest."""
        for indent in _TOP_LEVEL_INDENTS:
            marker = indent + json.dumps(key) + ": "
            start = self._text.find(marker)
            if start >= 0:
                break
        else:
            return None
        try:
            value, _ = json.JSONDecoder().raw_decode(self._text, start + len(marker))
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def providers(self) -> dict[str, str]:
        """Every model key of the map -> its litellm_provider ("" if it names none), in one pass over the text."""
        if self._providers is None:
            providers: dict[str, str] = {}
            key = None
            for match in _KEY_OR_PROVIDER.finditer(self._text):
                if match.group(1):
                    key = _json_string(match.group(1))
                    providers[key] = ""
                elif key is not None:
                    providers[key] = _json_string(match.group(2))
            providers.pop(_NOT_A_MODEL, None)
            self._providers = providers
        return self._providers


@functools.lru_cache(maxsize=1)
def price_map() -> PriceMap:
    """The installed litellm's price map, read once a process: every catalog shares it (the cost estimate's
    base and head, the evals, the judges, lint). Empty when litellm is not installed."""
    path = litellm_price_map()
    return PriceMap(path.read_text(encoding="utf-8") if path else "")


def _json_string(quoted: str) -> str:
    return quoted[1:-1] if "\\" not in quoted else json.loads(quoted)  # decode only what has escapes


def _per_token(per_million: Any) -> float | None:
    return per_million / PER_MILLION if _number(per_million) is not None else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def reported_cost(response: Any) -> float | None:
    """The price litellm put on an answer (its ``response_cost``), for a model we have no price for; None if none."""
    cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
    return float(cost) if isinstance(cost, (int, float)) else None
