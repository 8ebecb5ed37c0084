"""Which model parameters a prompt file may hand to litellm: an allowlist, and why the rest is refused.

A prompt's ``model.params`` are written by whoever wrote the file; in a pull-request check, its
author. litellm takes much more than sampling parameters as keyword arguments: where the request
goes (``api_base``, ``base_url``), with which credentials, what a call costs, which callbacks see
it, and even an answer made up without calling anything (``mock_response``). So only the schema's
sampling parameters and the few provider knobs in ``EXTRA_ALLOWED`` pass; every other key of
``extra`` is refused, known to litellm or not. Likewise a model name that holds a URL: litellm's
oobabooga and huggingface providers send the request there, over ``--api-base``.

Light on purpose: lint imports it (no litellm, no eval machinery).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The schema's own sampling and length parameters, passed to litellm as they are.
SAMPLING = frozenset({"temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty"})
# promptops' own: timeout_s becomes litellm's timeout, extra is spread in (its allowed keys only).
OWN = frozenset({"timeout_s", "extra"})

# Provider knobs a prompt may set in model.params.extra. Each changes how the answer is sampled or
# shaped, never where it comes from, who pays, who else sees it, or whether a model is called.
EXTRA_ALLOWED: dict[str, str] = {
    "response_format": "the answer's format: JSON mode or a JSON schema",
    "logit_bias": "raise or lower the odds of given tokens",
    "logprobs": "return token log-probabilities with the answer",
    "top_logprobs": "how many alternatives logprobs lists per token",
    "top_k": "sample from the k likeliest tokens (Anthropic, Gemini, Ollama and others)",
    "reasoning_effort": "how long a reasoning model thinks (billed as output tokens, which the answer counts)",
    "user": "an end-user id that providers use for abuse monitoring",
}

_ENDPOINT = frozenset({"api_base", "base_url", "api_version", "organization", "custom_llm_provider", "deployment_id",
                       "region_name", "client", "http_client", "proxy", "proxies", "ssl_verify"})
_RAW = frozenset({"extra_headers", "headers", "extra_body"})
_CALLBACKS = frozenset({"metadata", "logger_fn", "tags", "langfuse_host", "proxy_server_request"})
_CONTROLLED = frozenset({"num_retries", "max_retries", "fallbacks", "model_list", "context_window_fallback_dict",
                         "cache", "caching", "no-log"})
_ANSWER_SHAPE = frozenset({"n", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls", "functions",
                           "function_call", "modalities", "audio", "prediction"})
_CREDENTIAL_WORDS = ("key", "secret", "token", "password", "credential")
_CREDENTIAL_PREFIXES = ("aws_", "vertex_", "azure_", "watsonx_", "bedrock_", "google_", "gcp_")


class RefusedParams(ValueError):
    """A prompt asks litellm for something promptops never passes on; the message names every key and why.

    Raised before any request is made: a refused call is not made at all, rather than made without
    the key or made elsewhere.
    """


def refused_extra(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, why) for every key of ``params`` (a prompt's model.params) that litellm must not see."""
    refused = [(str(key), f"'{key}' is not a model parameter promptops passes on")
               for key in params if key not in SAMPLING | OWN]
    extra = params.get("extra") or {}
    if not isinstance(extra, Mapping):
        return refused + [("extra", "model.params.extra must be a mapping")]
    return refused + [(str(key), why_refused(str(key))) for key in extra if key not in EXTRA_ALLOWED]


def why_refused(key: str) -> str:
    """Why ``key`` may not be set in model.params.extra (the allowlist decides; this only explains)."""
    lowered = key.lower()
    if lowered in SAMPLING or lowered == "max_completion_tokens":
        own = "max_tokens" if "tokens" in lowered else lowered
        return f"'{key}' belongs in model.params.{own}, which the schema bounds and lint, cost and the spend cap read"
    if "timeout" in lowered:
        return f"'{key}': a prompt's timeout is model.params.timeout_s, which the schema bounds"
    if lowered in _CONTROLLED:
        return f"'{key}' is promptops' to set: retries, fallbacks and caching follow the run's settings"
    if lowered.startswith("mock"):
        return f"'{key}' makes up the model's answer without calling any model"
    if "cost" in lowered or "price" in lowered:
        return f"'{key}' sets what a call costs; prices come from litellm's map and pricing: in promptops.yaml"
    if lowered in _RAW:
        return f"'{key}' adds headers or body fields to the request past this allowlist"
    if lowered in _ENDPOINT or any(word in lowered for word in ("url", "endpoint", "host")):
        return (f"'{key}' chooses where the request, and the API key with it, goes; endpoints come only from "
                "--api-base or PROMPTOPS_API_BASE")
    if any(word in lowered for word in _CREDENTIAL_WORDS) or lowered.startswith(_CREDENTIAL_PREFIXES):
        return f"'{key}' sets credentials or the provider account; those come only from the environment"
    if lowered in _CALLBACKS or "callback" in lowered or lowered.startswith("litellm"):
        return f"'{key}' hands requests and answers to litellm's callbacks, loggers or settings"
    if lowered in _ANSWER_SHAPE:
        return f"'{key}' changes the answer's form; promptops judges one whole text answer per call"
    return f"'{key}' is not a parameter a prompt may pass (allowed in extra: {', '.join(sorted(EXTRA_ALLOWED))})"


def endpoint_in_model(model: str) -> str | None:
    """Why ``model`` may not be called, when the name holds a URL (litellm would send the request there)."""
    if "://" in model:
        return (f"model '{model}' holds a URL, which litellm would send the request to; name a model "
                "(provider/name) and choose the endpoint with --api-base or PROMPTOPS_API_BASE")
    return None


def refusal(model: str, params: Mapping[str, Any]) -> str | None:
    """One line saying everything wrong with calling ``model`` with ``params``, or None when nothing is."""
    problems = [why for _, why in refused_extra(params)]
    problem = endpoint_in_model(model)
    if problem:
        problems.insert(0, problem)
    return "; ".join(problems) or None
