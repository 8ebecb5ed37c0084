"""What is known about a model: its prices and token limits, and its provider, offline.

Both come from litellm's price map (``pricing.price_map``: read as a data file, once a process)
and from ``pricing:`` in promptops.yaml, which adds and overrides entries; what a price is and
what a call costs is ``pricing``'s. Only for a name it does not know does the catalog list every
key, to say which known name was probably meant (``modelnames``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptops.modelnames import closest
from promptops.pricing import Price, price_map


@dataclass(frozen=True)
class ModelInfo:
    name: str
    price: Price
    max_input_tokens: int | None
    max_output_tokens: int | None
    source: str  # where the figures came from, for reports


class ModelCatalog:
    """litellm's price map with ``pricing:`` (the overrides of one promptops.yaml) over it."""

    def __init__(self, overrides: dict[str, dict[str, Any]] | None = None) -> None:
        self.overrides = overrides or {}
        self._cache: dict[str, ModelInfo | None] = {}
        self._meant: dict[str, list[str]] = {}

    def provider(self, name: str) -> str | None:
        """The provider litellm's price map records for a model name as it is keyed there (a bare ``gpt-4o``)."""
        entry = price_map().entry(name)
        provider = entry.get("litellm_provider") if entry else None
        return provider if isinstance(provider, str) else None

    def get(self, name: str) -> ModelInfo | None:
        if name not in self._cache:
            self._cache[name] = self._lookup(name)
        return self._cache[name]

    def input_cost(self, name: str, tokens: int) -> float | None:
        """What ``tokens`` input tokens cost with the model (an embedding bills input alone); None: no price."""
        info = self.get(name)
        return info.price.call_cost(tokens, 0) if info is not None else None

    def query_cost(self, name: str) -> float | None:
        """What one query costs at the model's price per query (a rerank); None: no such price."""
        info = self.get(name)
        return info.price.call_cost(0, 0, queries=1) if info is not None else None

    def meant(self, name: str) -> list[str]:
        """The known names an unknown ``name`` is a likely typo of, written as the user would (same provider)."""
        if name not in self._meant:
            self._meant[name] = [] if self.get(name) is not None else self._likely_meant(name)
        return self._meant[name]

    def _likely_meant(self, name: str) -> list[str]:
        provider, model = _provider_and_model(name)
        known = self.names_of(provider.lower())
        return [known[match] for match in closest(model, known)]

    def names_of(self, provider: str) -> dict[str, str]:
        """The model part of each name a provider's models are known by -> the name in full.

        ``provider`` is a lower-case prefix (``openai``); "" for names written without one.
        """
        names: dict[str, str] = {}
        for key, key_provider in price_map().providers().items():
            if provider and key.startswith(provider + "/"):
                names[key[len(provider) + 1:]] = key
            elif "/" not in key and (not provider or _same_provider(key_provider, provider)):
                names[key] = f"{provider}/{key}" if provider else key  # litellm keys these without the prefix
        for override in self.overrides:
            prefix, model = _provider_and_model(override)
            if prefix.lower() == provider:
                names[model] = override
        return names

    def _lookup(self, name: str) -> ModelInfo | None:
        override = self.overrides.get(name)
        if override is not None:
            return ModelInfo(
                name=name,
                price=Price.from_override(override),
                max_input_tokens=override.get("context_window"),
                max_output_tokens=override.get("max_output_tokens"),
                source="promptops.yaml pricing",
            )
        for key in _candidate_keys(name):
            entry = price_map().entry(key)
            if entry is not None:
                return ModelInfo(
                    name=name,
                    price=Price.from_price_map(entry),
                    max_input_tokens=_integer(entry.get("max_input_tokens")),
                    max_output_tokens=_integer(entry.get("max_output_tokens") or entry.get("max_tokens")),
                    source=f"litellm price map ({key})",
                )
        return None


def _provider_and_model(name: str) -> tuple[str, str]:
    provider, _, model = name.partition("/")
    return (provider, model) if model else ("", name)


def _same_provider(key_provider: str, provider: str) -> bool:
    """litellm's provider of an unprefixed key against the prefix a user writes (vertex_ai for
    vertex_ai-language-models, bedrock for bedrock_converse)."""
    return key_provider == provider or key_provider.startswith((provider + "-", provider + "_"))


def _candidate_keys(name: str) -> list[str]:
    """litellm keys OpenAI and Anthropic models without their provider prefix."""
    keys = [name]
    if "/" in name:
        keys.append(name.split("/", 1)[1])
    return keys


def _integer(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
