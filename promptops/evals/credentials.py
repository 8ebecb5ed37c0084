"""Which environment variables a model's provider needs, known without importing litellm.

litellm's ``validate_environment`` answers the same question, but only after its import (seconds):
a run without a key would plan, start workers and import litellm before saying so. This table holds
the providers people use most, read as litellm (the pinned release) reads them; the contract test in
tests/evals/test_credentials.py holds it to litellm's answers. A provider not in it is left to litellm's own
check, which still runs before the first call.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from promptops.models import ModelCatalog

# provider -> the ways to satisfy it: each a set of variables that must all be set; the first way is the one named.
PROVIDER_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "openai": (("OPENAI_API_KEY",),),
    "azure": (("AZURE_API_KEY", "AZURE_API_BASE", "AZURE_API_VERSION"),),
    "anthropic": (("ANTHROPIC_API_KEY",), ("ANTHROPIC_AUTH_TOKEN",)),
    "gemini": (("GEMINI_API_KEY",), ("GOOGLE_API_KEY",)),
    "mistral": (("MISTRAL_API_KEY",),),
    "groq": (("GROQ_API_KEY",),),
    "cohere": (("COHERE_API_KEY",),),
    "deepseek": (("DEEPSEEK_API_KEY",),),
    "xai": (("XAI_API_KEY",),),
    "openrouter": (("OPENROUTER_API_KEY",),),
    "together_ai": (("TOGETHERAI_API_KEY",),),
    "perplexity": (("PERPLEXITYAI_API_KEY",),),
    "fireworks_ai": (("FIREWORKS_AI_API_KEY",), ("FIREWORKS_API_KEY",), ("FIREWORKSAI_API_KEY",),
                     ("FIREWORKS_AI_TOKEN",)),
    "deepinfra": (("DEEPINFRA_API_KEY",),),
    "cerebras": (("CEREBRAS_API_KEY",),),
    "voyage": (("VOYAGE_API_KEY",),),
    "huggingface": (("HUGGINGFACE_API_KEY",),),
    "replicate": (("REPLICATE_API_KEY",),),
}


def provider_of(model: str, catalog: ModelCatalog | None = None) -> str | None:
    """The provider litellm would route ``model`` to, when this table knows it: the prefix of
    ``provider/model``, else the provider litellm's price map records for a bare name."""
    prefix, slash, _ = model.partition("/")
    if slash:
        return prefix if prefix in PROVIDER_KEYS else None
    provider = (catalog or ModelCatalog()).provider(model)
    return provider if provider in PROVIDER_KEYS else None


def missing_credentials(models: Iterable[str], catalog: ModelCatalog | None = None) -> str | None:
    """What the first model (by name) whose provider's variables are unset needs, as a message; None when
    every provider this table knows has what it needs. An empty value is no key: GitHub Actions passes
    a secret a fork cannot see as an empty string."""
    catalog = catalog or ModelCatalog()
    for model in sorted(set(models)):
        provider = provider_of(model, catalog)
        if provider is None:
            continue
        ways = PROVIDER_KEYS[provider]
        if any(all(os.environ.get(name, "").strip() for name in way) for way in ways):
            continue
        named = [name for name in ways[0] if not os.environ.get(name, "").strip()]
        others = [way[0] for way in ways[1:]]
        needs = " and ".join(named) + (f" (or {', '.join(others)})" if others else "")
        return (f"{model} needs {needs} in the environment (for {provider}; litellm reads it from there); "
                "set it, or point --api-base at an OpenAI-compatible server")
    return None
