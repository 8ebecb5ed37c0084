"""PO4xx: what a prompt asks of its model, against what the model can do."""

from __future__ import annotations

from collections.abc import Iterator

from promptops.codes import COST_BUDGET_EXCEEDED, INPUT_BUDGET_EXCEEDED
from promptops.findings import Severity
from promptops.lint.project import LintProject
from promptops.lint.registry import Hit, hit, loader_rule, rule
from promptops.specs import PromptSpec


@rule("PO401", "max-tokens-over-limit", "prompt")
def max_tokens_over_limit(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
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
def unknown_model(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
    """Neither litellm's price map nor `pricing:` in promptops.yaml knows the
    model, so its cost shows as unknown and its limits cannot be checked. Add
    it under `pricing:` (for fine-tuned or self-hosted models) or fix the name.
    A name that looks like a typo of a known one is PO403 instead.

    Fails:   model: {name: openai/acme-support-ft}   (a fine-tuned model the price map cannot know)
    Passes:  the same model with its price in promptops.yaml:
             pricing: {openai/acme-support-ft: {input: 0.30, output: 1.20}}   (USD per million tokens)
    """
    if project.models.get(spec.model) is None and not project.models.meant(spec.model):
        yield hit(spec.source, ("model", "name"),
                  f"model '{spec.model}' has no known price or limits; add it under pricing: in promptops.yaml")


@rule("PO403", "mistyped-model", "prompt")
def mistyped_model(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
    """The model name is unknown but one or two typing slips away from a model
    of the same provider that litellm's price map (or `pricing:`) knows: the
    call would fail, or reach a model nobody chose. A slip is two letters
    swapped, a letter doubled, dropped, added or changed inside a word, a
    separator or letter case; names that differ in a number (gpt-4 / gpt-5,
    o1 / o3, another date), by a whole word (gpt-4o / gpt-4o-mini), by a
    letter at a word's start or end (flash / flashx) or by a changed letter in
    a short word (lite / live) are distinct models, never typos, and neither is
    any name the price map or `pricing:` knows. If the name is right (a model
    newer than the price map), add it under `pricing:`. PO402 is not reported
    for a name this rule reports.

    Fails:   model: {name: openai/gpt-4o-mni}   (did you mean openai/gpt-4o-mini?)
    Passes:  model: {name: openai/gpt-4o-mini}
    """
    meant = project.models.meant(spec.model)
    if meant:
        yield hit(spec.source, ("model", "name"),
                  f"model '{spec.model}' is unknown: did you mean {' or '.join(meant[:3])}? "
                  f"(if the name is right, add it under pricing: in promptops.yaml)")


loader_rule(INPUT_BUDGET_EXCEEDED, "input-budget-exceeded", """
    At the head of the change, the prompt's estimated input (p95 across its eval
    cases, retrieved chunks included) is larger than budget.max_input_tokens.

    Fails:   budget: {max_input_tokens: 2000}   with 12 chunks of 512 tokens retrieved
    Passes:  fewer or smaller chunks, or a budget that says what you intend to pay for.
""", scope="cost")
loader_rule(COST_BUDGET_EXCEEDED, "cost-budget-exceeded", """
    At the head of the change, one call of the prompt is estimated to cost more
    than budget.max_cost_per_call_usd (input tokens at their median, output
    tokens as observed in cached eval results, else max_tokens). It judges the
    model call: a retrieval-backed prompt's query embedding and rerank are
    priced apart (retrieval per call) and counted in its monthly figure.

    Fails:   budget: {max_cost_per_call_usd: 0.002}   after a switch to a model ten times dearer
    Passes:  a cheaper model, shorter prompts, or a budget raised on purpose.
""", scope="cost")
