"""PO4xx: what a prompt asks of its model, against what the model can do."""

from __future__ import annotations

from typing import Iterator

from promptops.findings import Severity
from promptops.lint.project import Project
from promptops.lint.registry import Hit, hit, loader_rule, rule
from promptops.specs import PromptSpec


@rule("PO401", "max-tokens-over-limit", "prompt")
def max_tokens_over_limit(spec: PromptSpec, project: Project) -> Iterator[Hit]:
    """`max_tokens` is larger than the most the model can produce; the provider
    rejects the call or silently caps it, and cost estimates are wrong.

    Fails:   model: {name: openai/gpt-4o-mini, params: {max_tokens: 50000}}   (limit 16,384)
    Passes:  params: {max_tokens: 400}
    """
    max_tokens = spec.params.get("max_tokens")
    model = project.models.get(spec.model)
    if max_tokens is None or model is None or not model.max_output_tokens:
        return
    if max_tokens > model.max_output_tokens:
        yield hit(spec.source, ("model", "params", "max_tokens"),
                  f"max_tokens {max_tokens:,} exceeds {spec.model}'s output limit of {model.max_output_tokens:,}")


@rule("PO402", "unknown-model", "prompt", Severity.WARNING)
def unknown_model(spec: PromptSpec, project: Project) -> Iterator[Hit]:
    """Neither litellm's price map nor `pricing:` in promptops.yaml knows the
    model, so its cost shows as unknown and its limits cannot be checked. Add
    it under `pricing:` (for fine-tuned or self-hosted models) or fix the name.

    Fails:   model: {name: openai/gpt-4o-mni}
    Passes:  model: {name: openai/gpt-4o-mini}, or a pricing: entry for the model.
    """
    if project.models.get(spec.model) is None:
        yield hit(spec.source, ("model", "name"),
                  f"model '{spec.model}' has no known price or limits; add it under pricing: in promptops.yaml")


loader_rule("PO410", "input-budget-exceeded", """
    At the head of the change, the prompt's estimated input (p95 across its eval
    cases, retrieved chunks included) is larger than budget.max_input_tokens.

    Fails:   budget: {max_input_tokens: 2000}   with 12 chunks of 512 tokens retrieved
    Passes:  fewer or smaller chunks, or a budget that says what you intend to pay for.
""", scope="cost")
loader_rule("PO411", "cost-budget-exceeded", """
    At the head of the change, one call of the prompt is estimated to cost more
    than budget.max_cost_per_call_usd (input tokens at their median, output
    tokens as observed in cached eval results, else max_tokens).

    Fails:   budget: {max_cost_per_call_usd: 0.002}   after a switch to a model ten times dearer
    Passes:  a cheaper model, shorter prompts, or a budget raised on purpose.
""", scope="cost")
