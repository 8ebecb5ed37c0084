"""Eval results as the eval stage builds them and the reports read them: samples, cases, suites."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

Verdict = Literal["regression", "improvement", "within noise", "no change"]


class CaseStatus(str, Enum):
    """How one case moved from base to head (a str, so it compares and serialises as its value)."""

    REGRESSED = "regressed"
    FIXED = "fixed"
    FLAKY = "flaky"
    UNCHANGED = "unchanged"
    NEW = "new"
    REMOVED = "removed"
    UNANSWERED = "unanswered"  # a side got no answer (the calls failed): nothing to compare

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class PairedResult:
    cases: int  # paired cases compared
    regressed: int  # every base sample passes, every head sample fails
    fixed: int
    flaky: int  # the samples of a side disagree
    unchanged: int
    confirmed: bool  # every regressed and fixed case has two samples or more a side
    candidates_regressed: int  # cases whose initial samples went from all-pass to all-fail
    candidates_fixed: int
    p_flips_regressed: float  # P(this many confirmed regressions | no change), an upper bound
    p_flips_fixed: float
    drop: float  # mean over cases of (base pass share - head pass share), all samples
    p_drop: float  # one-sided paired sign-flip test of a drop this large
    p_rise: float
    alpha: float
    by_flips: Literal["regression", "improvement", ""]  # rule A
    by_samples: Literal["regression", "improvement", ""]  # rule B
    verdict: Verdict

    @property
    def net_regressed(self) -> int:
        return self.regressed - self.fixed

    @property
    def p_value(self) -> float:
        """Two-sided p of the paired test over all samples (rule B)."""
        return min(1.0, 2 * min(self.p_drop, self.p_rise))

    def evidence(self) -> str:
        """The counts and tests behind the verdict, for a reader."""
        flips = self.regressed + self.fixed
        parts = [f"{self.regressed} regressed, {self.fixed} fixed"
                 + ("" if self.confirmed or not flips else " (unconfirmed: one sample a side)")]
        if not self.flaky:
            parts.append("no case flaky, so its flips are not noise" if flips else "no case moved")
            return ", ".join(parts)
        parts.append(f"{self.flaky} flaky")
        if flips:
            p = self.p_flips_regressed if self.regressed >= self.fixed else self.p_flips_fixed
            parts.append(f"confirmed flips p = {p:.2g}")
        parts.append(f"paired test over all samples p = {self.p_value:.2g}")
        return ", ".join(parts)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str
    preexisting: bool = False  # the gate fails at base as well


@dataclass(frozen=True)
class LatencyChange:
    base_count: int
    head_count: int
    shift_ms: float | None  # Hodges-Lehmann: median of head - base over all pairs
    shift_low_ms: float | None
    shift_high_ms: float | None
    p_value: float | None  # two-sided Mann-Whitney; None when a side has too few fresh latencies
    changed: bool  # beyond noise


class Failure(str, Enum):
    """Why an attempt has no answer to assess."""

    NO_ANSWER = "no answer"  # the model service failed after retries, or refused the request
    SPEND_CAP = "spend cap"  # not sent: it could have passed the spend cap
    NOT_RENDERED = "not rendered"  # not sent: the prompt does not render with the case's vars
    REFUSED = "refused"  # not sent: model params off the allowlist, or a model name that is a URL (lint says so)
    NO_PASSAGES = "no passages"  # not sent: the retrieval that fills its passages failed or was not allowed

    @property
    def is_sample(self) -> bool:
        """Whether the attempt still counts as a (failed) sample: a prompt that does not render is broken."""
        return self is Failure.NOT_RENDERED


@dataclass(frozen=True)
class Call:
    key: str
    prompt_id: str
    prompt_version: str
    case_id: str
    repeat: int
    model: str
    messages: list[dict[str, str]]
    params: dict[str, Any]


@dataclass(frozen=True)
class CallOutcome:
    call: Call
    output: str | None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    error: str | None = None  # set when no answer could be had
    cached: bool = False
    attempts: int = 0
    failure: Failure | None = None  # set with error
    shared: bool = False  # the answer of an identical request made once for both (base and head)


@dataclass(frozen=True)
class Attempt:
    """One sample of one case."""

    passed: bool
    score: float
    output: str | None
    latency_ms: float | None  # None: not timed (from the cache, the client's warm-up call, or no answer)
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    failures: tuple[str, ...]  # reasons of the assertions that failed, or the error that stopped the call
    cached: bool = False
    failure: Failure | None = None  # why there is no answer to assess
    shared: bool = False  # the answer of an identical request made once for base and head

    @property
    def is_sample(self) -> bool:
        """Whether this attempt is an outcome: answered, or a prompt that does not render (a failure)."""
        return self.failure is None or self.failure.is_sample

    @property
    def fresh(self) -> bool:
        """A call made in this run, by this side: its cost is new."""
        return not self.cached and not self.shared and self.failure is None

    @property
    def timed(self) -> float | None:
        """The latency measured in this run, also when an identical request of the other side made the call."""
        return None if self.cached else self.latency_ms


@dataclass(frozen=True)
class CaseRun:
    case_id: str
    vars: dict[str, Any]
    expected: Any
    attempts: tuple[Attempt, ...]
    initial: int = 0  # how many of the attempts were asked first; the rest confirm (0: all of them)

    @property
    def passes(self) -> list[bool]:
        """The outcome of every sample (attempts that got no answer are no sample)."""
        return [attempt.passed for attempt in self.attempts if attempt.is_sample]

    @property
    def initial_samples(self) -> int:
        first = self.attempts[: self.initial] if self.initial else self.attempts
        return sum(attempt.is_sample for attempt in first)

    @property
    def confirmations(self) -> int:
        return len(self.attempts) - self.initial if self.initial else 0

    @property
    def reasons(self) -> list[str]:
        """Why its failed samples failed: each reason once, in the order they came."""
        return list(dict.fromkeys(reason for attempt in self.attempts if not attempt.passed
                                  for reason in attempt.failures))

    @property
    def shown_output(self) -> str | None:
        """The answer a report shows for the case: its first failed sample's, else its first."""
        attempt = next((a for a in self.attempts if not a.passed), self.attempts[0]) if self.attempts else None
        return None if attempt is None else attempt.output


@dataclass(frozen=True)
class SideFigures:
    cases: int
    pass_rate: float
    pass_rate_interval: tuple[float, float]
    mean_score: float
    latency_p50_ms: float | None  # over the latencies timed in this run (not cached, not warm-up)
    latency_p95_ms: float | None
    latency_p50_interval_ms: tuple[float | None, float | None]  # distribution-free 95% interval
    latency_p95_interval_ms: tuple[float | None, float | None]
    latency_timed: int  # calls whose latency was measured in this run
    input_tokens_per_call: float | None
    output_tokens_per_call: float | None
    cost_per_call_usd: float | None  # measured on the answers
    calls: int  # attempts that needed an answer (a prompt that does not render needs none)
    cached_calls: int
    shared_calls: int  # answered by an identical request of the other side, not a call of their own
    new_calls: int  # calls made in this run by this side
    confirmation_calls: int  # attempts that confirm a flagged case
    unanswered: int  # calls that got no answer after retries
    capped: int  # calls the spend cap refused
    new_spend_usd: float | None  # what this run's own calls cost (None if a price is unknown)
    judge_cost_usd: float | None
    flaky: list[str]
    retrieval: RetrievalFigures | None = None  # when the suite's passages were retrieved


@dataclass(frozen=True)
class CaseChange:
    case_id: str
    status: CaseStatus
    base: CaseRun | None
    head: CaseRun | None

    @property
    def confirmed(self) -> bool:
        """Regressed or fixed on two samples or more a side, every one agreeing."""
        return (self.status in (CaseStatus.REGRESSED, CaseStatus.FIXED) and self.base is not None
                and self.head is not None and min(len(self.base.passes), len(self.head.passes)) >= 2)


@dataclass
class SuiteComparison:
    suite: str
    prompt_id: str
    base: SideFigures | None
    head: SideFigures
    cases: list[CaseChange]
    paired: PairedResult | None
    latency: LatencyChange | None = None
    gates: list[tuple[str, GateResult]] = field(default_factory=list)
    repeat: int = 1  # initial samples a case
    confirm: int = 0  # extra samples a side for a flagged case
    # The gates it was held to: the suite's over the project's.
    gate_limits: dict[str, Any] = field(default_factory=dict)
    retrieval: RetrievalComparison | None = None  # when the suite's passages were retrieved

    @property
    def passed(self) -> bool:
        return all(result.passed for _, result in self.gates)

    def with_status(self, *statuses: CaseStatus) -> list[CaseChange]:
        return [change for change in self.cases if change.status in statuses]

    def counts(self) -> dict[CaseStatus, int]:
        """How many cases moved each way (every status, zeros included)."""
        return {status: sum(change.status is status for change in self.cases) for status in CaseStatus}


def fresh_latencies(cases: Iterable[CaseRun | None]) -> list[float]:
    """Latencies timed in this run (an answer shared by base and head counts on both sides)."""
    return [a.timed for case in cases if case is not None for a in case.attempts if a.timed is not None]


# -- retrieval, when a suite's prompt retrieves its passages (issue 14) -------------------------------

@dataclass(frozen=True)
class CaseRetrieval:
    """What retrieval gave one case at one ref, scored against the case's ``expected_sources``."""

    query: str
    sources: tuple[str, ...]  # the document ids of the passages the prompt received, in rank order
    expected: tuple[str, ...]  # expected_sources as written (empty: the case is not scored)
    found: tuple[str, ...]  # of ``expected``, those that some passage's document matches
    first_rank: int | None  # 1-based rank of the first passage whose document matches an expected source
    relevant: tuple[bool, ...] | None = None  # judged per passage, in rank order (None: not judged)
    supported: tuple[bool, ...] | None = None  # per claim of the expected answer: do the passages support it?

    @property
    def scored(self) -> bool:
        return bool(self.expected)

    @property
    def context_precision(self) -> float | None:
        """Judged, rank-aware: the share of the passages judged relevant, each weighted 1 / log2(rank + 1) as in
        DCG: 1 when every passage is relevant, 0 when none is, and a relevant passage at rank 1 weighs about three
        times one at rank 8. Not RAGAS' average precision, which ignores irrelevant passages ranked below the last
        relevant one (a top_k that adds or cuts only those would show nothing). None: not judged (or no passage)."""
        if not self.relevant:
            return None
        weights = [1 / math.log2(rank + 1) for rank in range(1, len(self.relevant) + 1)]
        return sum(w for w, relevant in zip(weights, self.relevant) if relevant) / sum(weights)

    @property
    def context_recall(self) -> float | None:
        """Judged: the share of the expected answer's claims that the passages support (None: not judged, or
        an expected answer that states no claim)."""
        return sum(self.supported) / len(self.supported) if self.supported else None

    @property
    def hit(self) -> bool:
        """hit@k: at least one expected source is among the passages."""
        return bool(self.found)

    @property
    def recall(self) -> float:
        """recall@k: the share of the expected sources among the passages."""
        return len(self.found) / len(self.expected) if self.expected else 0.0

    @property
    def reciprocal_rank(self) -> float:
        return 1 / self.first_rank if self.first_rank else 0.0


@dataclass(frozen=True)
class RetrievalRun:
    """One suite's retrieval at one ref: the config and index it used, and what each case got."""

    config: str
    index_name: str | None
    index_key: str  # what built the index (model, dimensions, chunking, every chunk): same key, same vectors
    embedding_model: str
    chunking: dict[str, Any]
    k: int  # passages a case receives: reranker.top_n, else retriever.top_k
    cases: dict[str, CaseRetrieval]  # the cases that got retrieved passages (a case with its own keeps them)
    kept: int  # cases that gave their own passages
    corpus_chunks: int
    corpus_tokens: int  # the corpus in the embedding model's tokens: what a re-index embeds
    reindex_cost_usd: float | None  # corpus_tokens at the embedding price (None: no price)
    embedded_chunks: int  # chunks embedded in this run (not from the index folder or the cache)
    calls: int  # embedding and rerank calls made in this run
    cost_usd: float | None  # what those calls cost (None: a price unknown)
    query_cost_usd: float | None  # per case: its query's embedding and rerank, as in production (None: unknown)
    judged: tuple[str, ...] = ()  # context_precision, context_recall: the suite's retrieval.judge
    judge_model: str | None = None
    judge_calls: int = 0  # judge calls made in this run for them (cache hits are free and not counted)
    judge_cost_usd: float | None = 0.0  # what those cost (None: a price unknown); apart from cost_usd


@dataclass(frozen=True)
class RetrievalFigures:
    """A side's retrieval quality over its scored cases (those that name expected_sources)."""

    config: str
    k: int
    scored: int
    hit_rate: float  # mean hit@k
    recall: float  # mean recall@k
    mrr: float  # mean reciprocal rank
    calls: int
    cost_usd: float | None
    query_cost_usd: float | None
    context_precision: float | None = None  # mean over the cases judged (None: not judged)
    context_recall: float | None = None
    precision_judged: int = 0  # cases with a judged context precision
    recall_judged: int = 0  # cases with a judged context recall (an expected answer stating a claim)
    judge_model: str | None = None
    judge_calls: int = 0
    judge_cost_usd: float | None = 0.0  # the judges' cost for these figures, apart from the answers' and cost_usd


@dataclass(frozen=True)
class JudgedChange:
    """Base against head for one judged figure (context precision or recall) over the cases judged on both
    sides; the verdict is ``stats.judged_change``'s (its model: stats' docstring, "Judged retrieval")."""

    paired: int  # cases judged on both sides
    base: float  # the figure's mean over them, at base
    head: float
    moved: int  # of them, cases whose figure differs
    p_drop: float  # one-sided paired sign-flip test of a fall this large
    p_rise: float
    verdict: Verdict

    @property
    def drop(self) -> float:
        return self.base - self.head

    @property
    def p_value(self) -> float:
        return min(1.0, 2 * min(self.p_drop, self.p_rise))


@dataclass(frozen=True)
class JudgedMove:
    """A case whose judged context precision or recall differs between base and head (as two decimals show it)."""

    case_id: str
    precision: tuple[float | None, float | None]  # base, head (None: not judged on that side)
    recall: tuple[float | None, float | None]
    answer: CaseStatus | None  # how the case's answer moved, when it was compared

    @property
    def fall(self) -> float:
        """The larger of the two falls, for listing the worst first (a rise is a negative fall)."""
        return max((base - head for base, head in (self.precision, self.recall)
                    if base is not None and head is not None), default=0.0)


@dataclass(frozen=True)
class SourceChange:
    """A case whose retrieved sources differ between base and head."""

    case_id: str
    lost: tuple[str, ...]  # expected sources found at base and not at head
    gained: tuple[str, ...]
    base_recall: float
    head_recall: float
    answer: CaseStatus | None  # how the case's answer moved, when it was compared


@dataclass(frozen=True)
class RetrievalComparison:
    """Base against head for one suite's retrieval: the figures, the cases that moved, the verdict."""

    base: RetrievalFigures | None
    head: RetrievalFigures
    changes: list[SourceChange]  # cases scored on both sides whose found sources differ
    paired: int  # cases scored on both sides
    lost: int  # of them, hit at base and missed at head
    gained: int
    drop: float  # mean recall@k at base minus at head, over the paired cases
    verdict: Verdict
    reindex: str | None  # why the head needs its index built anew (embedding or chunking changed), or None
    reindex_cost_usd: float | None  # the one-off cost of that re-index (None: no price or no re-index)
    reindex_tokens: int = 0  # what it embeds: the head's corpus in the embedding model's tokens
    context_precision: JudgedChange | None = None  # when both sides judged it (retrieval.judge)
    context_recall: JudgedChange | None = None
    judged_moves: tuple[JudgedMove, ...] = ()  # cases whose judged figures moved, the largest fall first
