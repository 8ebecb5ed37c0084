"""Cost estimates as the estimate stage builds them and the reports read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from promptops.findings import Finding


@dataclass(frozen=True)
class TokenMethod:
    """How a model's tokens are counted, for reports."""

    encoding: str  # a tiktoken encoding name, or "chars/4" for the last-resort fallback
    exact: bool  # True only when this is the model's real tokenizer
    note: str  # one short sentence, no final period


class OutputSource(Enum):
    """Where an estimate's output tokens come from; ``Estimate.output_basis`` says it in words."""

    OBSERVED = "observed"  # the mean of cached eval answers
    MAX_TOKENS = "max_tokens"  # the prompt's max_tokens: an upper bound
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Estimate:
    """What one call of one prompt costs, at one ref, and how each figure was obtained."""

    prompt_id: str
    path: str
    version: str
    model: str
    input_tokens: int | None  # median across the samples
    input_tokens_p95: int | None
    samples: int
    input_basis: str
    retrieval_tokens: int  # part of input_tokens: the chunks the retriever adds
    token_method: TokenMethod
    output_tokens: float | None
    output_basis: str  # how output_tokens was obtained, in words
    cost_per_call: float | None  # the model call alone: what budget.max_cost_per_call_usd (PO411) judges
    calls_per_day: float | None
    monthly_cost: float | None  # (cost_per_call + retrieval_cost_per_call) x calls_per_day x 30
    price_source: str | None
    warnings: tuple[str, ...] = ()
    retrieval_into: str | None = None  # the input the retriever's chunks fill
    retrieval_chunks: int = 0  # how many it fills it with
    output_source: OutputSource = OutputSource.UNKNOWN
    # What retrieval adds to each call: embedding the query, and the reranker's price per query (0: the prompt
    # retrieves nothing; None: a price is unknown); retrieval_basis says how it was obtained, in words.
    retrieval_cost_per_call: float | None = 0.0
    retrieval_basis: str = ""


@dataclass(frozen=True)
class Delta:
    absolute: float | None  # None: one side is unknown
    percent: float | None  # only where both sides are non-zero


def delta(base: float | None, head: float | None) -> Delta:
    if base is None or head is None:
        return Delta(None, None)
    return Delta(head - base, (head - base) / base * 100 if base and head else None)


@dataclass(frozen=True)
class Change:
    prompt_id: str
    status: str  # added, removed, changed, unchanged
    base: Estimate | None
    head: Estimate | None

    def delta(self, name: str) -> Delta:
        value = lambda side: getattr(side, name) if side is not None else None  # noqa: E731
        if self.status == "added":
            return delta(0 if value(self.head) is not None else None, value(self.head))
        if self.status == "removed":
            return delta(value(self.base), 0 if value(self.base) is not None else None)
        return delta(value(self.base), value(self.head))


@dataclass(frozen=True)
class CostReport:
    base_label: str
    head_label: str
    changes: list[Change]
    monthly_base: float
    monthly_head: float
    unknown_monthly: list[str]  # prompts with usage whose cost is unknown at base or head
    findings: list[Finding] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    preexisting: set[tuple[str, str]] = field(default_factory=set)  # (path, code) of budgets the base breaks too

    @property
    def monthly_delta(self) -> Delta:
        return delta(self.monthly_base, self.monthly_head)
