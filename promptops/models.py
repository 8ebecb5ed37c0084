"""What is known about a model: prices and token limits, offline.

The source is the price map that ships inside the installed litellm package,
read as a data file (importing litellm costs seconds and may touch the
network). The file is large, so a model's entry is located by its key and
decoded alone. ``pricing:`` in promptops.yaml adds and overrides entries.
Only for a name it does not know does the catalog list every key, to say
which known name was probably meant (``modelnames``).
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptops.modelnames import closest

PRICE_MAP_NAME = "model_prices_and_context_window_backup.json"
# Top-level keys start a line, indented by four spaces (in litellm 1.106.2 one of them by none).
_TOP_LEVEL_INDENTS = ("\n    ", "\n")
# A top-level key of the price map, or the provider line of its entry.
_KEY_OR_PROVIDER = re.compile(r'\n(?:    )?("(?:[^"\\\n]|\\.)*"): \{|\n        "litellm_provider": ("[^"\n]*")')


@dataclass(frozen=True)
class ModelInfo:
    name: str
    input_cost_per_token: float | None
    output_cost_per_token: float | None
    max_input_tokens: int | None
    max_output_tokens: int | None
    source: str  # where the figures came from, for reports
    cached_input_cost_per_token: float | None = None  # input the provider served from its prompt cache

    def call_cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float | None:
        """What one call costs, in USD; None when a price it needs is unknown.

        Cached input tokens (a part of ``input_tokens``) are priced at the cached-input rate where
        the model has one, else as any input.
        """
        if self.input_cost_per_token is None or self.output_cost_per_token is None:
            return None
        cached = min(max(cached_input_tokens, 0), input_tokens)
        cached_rate = self.cached_input_cost_per_token
        if cached_rate is None:
            cached_rate = self.input_cost_per_token
        return ((input_tokens - cached) * self.input_cost_per_token + cached * cached_rate
                + output_tokens * self.output_cost_per_token)


def litellm_price_map() -> Path | None:
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


class ModelCatalog:
    def __init__(self, overrides: dict[str, dict[str, Any]] | None = None, price_map: Path | None = None) -> None:
        self.overrides = overrides or {}
        self._price_map = price_map
        self._text: str | None = None
        self._cache: dict[str, ModelInfo | None] = {}
        self._meant: dict[str, list[str]] = {}
        self._providers: dict[str, str] | None = None  # price-map key -> its litellm_provider

    def _map_text(self) -> str:
        if self._text is None:
            path = self._price_map or litellm_price_map()
            self._text = path.read_text(encoding="utf-8") if path else ""
        return self._text

    def _entry(self, key: str) -> dict[str, Any] | None:
        """Decode one top-level entry of the price map without parsing the rest."""
        text = self._map_text()
        for indent in _TOP_LEVEL_INDENTS:
            marker = indent + json.dumps(key) + ": "
            start = text.find(marker)
            if start >= 0:
                break
        else:
            return None
        try:
            value, _ = json.JSONDecoder().raw_decode(text, start + len(marker))
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def provider(self, name: str) -> str | None:
        """The provider litellm's price map records for a model name as it is keyed there (a bare ``gpt-4o``)."""
        entry = self._entry(name) if name != "sample_spec" else None
        provider = entry.get("litellm_provider") if entry else None
        return provider if isinstance(provider, str) else None

    def get(self, name: str) -> ModelInfo | None:
        if name not in self._cache:
            self._cache[name] = self._lookup(name)
        return self._cache[name]

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
        for key, key_provider in self._key_providers().items():
            if provider and key.startswith(provider + "/"):
                names[key[len(provider) + 1:]] = key
            elif "/" not in key and (not provider or _same_provider(key_provider, provider)):
                names[key] = f"{provider}/{key}" if provider else key  # litellm keys these without the prefix
        for override in self.overrides:
            prefix, model = _provider_and_model(override)
            if prefix.lower() == provider:
                names[model] = override
        return names

    def _key_providers(self) -> dict[str, str]:
        """Every key of the price map -> its litellm_provider ("" if it names none), in one pass over the text."""
        if self._providers is None:
            self._providers = {}
            key = None
            for match in _KEY_OR_PROVIDER.finditer(self._map_text()):
                if match.group(1):
                    key = _json_string(match.group(1))
                    self._providers[key] = ""
                elif key is not None:
                    self._providers[key] = _json_string(match.group(2))
            self._providers.pop("sample_spec", None)
        return self._providers

    def _lookup(self, name: str) -> ModelInfo | None:
        override = self.overrides.get(name)
        if override is not None:
            return ModelInfo(
                name=name,
                input_cost_per_token=override["input"] / 1e6,
                output_cost_per_token=override["output"] / 1e6,
                max_input_tokens=override.get("context_window"),
                max_output_tokens=override.get("max_output_tokens"),
                source="promptops.yaml pricing",
                cached_input_cost_per_token=(override["cached_input"] / 1e6 if "cached_input" in override else None),
            )
        for key in _candidate_keys(name):
            entry = self._entry(key)
            if entry is not None and key != "sample_spec":
                return ModelInfo(
                    name=name,
                    input_cost_per_token=_number(entry.get("input_cost_per_token")),
                    output_cost_per_token=_number(entry.get("output_cost_per_token")),
                    max_input_tokens=_integer(entry.get("max_input_tokens")),
                    max_output_tokens=_integer(entry.get("max_output_tokens") or entry.get("max_tokens")),
                    source=f"litellm price map ({key})",
                    cached_input_cost_per_token=_number(entry.get("cache_read_input_token_cost")),
                )
        return None


def _json_string(quoted: str) -> str:
    return quoted[1:-1] if "\\" not in quoted else json.loads(quoted)  # decode only what has escapes


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


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _integer(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
