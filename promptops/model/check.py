"""One check of a change (`promptops ci`), as the check stage builds it and every renderer reads it.

``CheckReport`` holds what each stage returned (lint, cost, diff, evals) and the verdict;
``CheckSummary`` holds every figure the reports show beyond those, computed once by the stage
(``ci.summarise``): the table's rows, the totals, the spend, the gates, the flaky and the
regressed cases a comment shows. A renderer only formats these; a new figure in the PR comment
is a field here, computed in ci.py and written by the templates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from promptops.findings import Finding
from promptops.model.cost import Change, CostReport
from promptops.model.diff import SpecDiff
from promptops.model.evals import CaseChange, GateResult, RetrievalComparison, SuiteComparison
from promptops.model.lint import LintRun


@dataclass
class EvalPart:
    ran: bool
    note: str = ""  # why the evals did not run, or ran only in part
    comparisons: list[SuiteComparison] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unanswered: int = 0  # calls that got no answer after retries
    capped: int = 0  # calls the spend cap refused
    first_error: str = ""
    unretrieved: int = 0  # calls not sent because retrieving their passages failed
    first_retrieval_error: str = ""


@dataclass(frozen=True)
class CheckVerdict:
    level: str  # pass, warn, fail
    failures: tuple[str, ...]
    warnings: tuple[str, ...]
    exit_code: int
    fail_on: str = "error"


@dataclass(frozen=True)
class PromptRow:
    """One changed or evaluated prompt, as the report's summary table shows it."""

    prompt: str
    status: str  # from the semantic diff: added, removed, modified, renamed, unchanged
    suites: list[SuiteComparison]
    pass_rate: tuple[float | None, float | None]  # base, head: pooled over the prompt's suites
    regressed: int  # confirmed (or single-sample) regressions, over the prompt's suites
    fixed: int
    flaky: int
    confirmed: bool  # every regression and fix confirmed by two samples a side or more
    verdict: str  # the suites' reading: regression, improvement, within noise, no change, or ""
    p95: tuple[float | None, float | None]  # fresh latencies only
    latency_changed: bool  # a latency change beyond noise in any of its suites
    estimate: Change | None  # the cost estimate from the files
    measured: tuple[float | None, float | None]  # cost per call measured on eval answers, base and head
    cost_gap: str | None  # why estimate and measurement differ by more than 2x


@dataclass(frozen=True)
class Totals:
    """What the check looked at, and the answers the evals needed, over every suite and both sides."""

    changed_files: int = 0  # prompt and retrieval files the change touches
    linted_files: int = 0
    suites: int = 0
    head_cases: int = 0
    answers: int = 0
    new_calls: int = 0
    cached_calls: int = 0
    shared_calls: int = 0  # answered once for base and head: identical requests
    confirmation_calls: int = 0


@dataclass(frozen=True)
class Money:
    """A sum of measured costs: ``usd`` over the priced ones, ``unpriced`` when some had no price."""

    usd: float = 0.0
    unpriced: bool = False


@dataclass(frozen=True)
class Spend:
    """What this run's own calls cost (measured): the model's answers, and the judges'."""

    models: Money = Money()
    judges: Money = Money()


@dataclass(frozen=True)
class Gate:
    """One gate of the check: a suite's (measured), or a prompt's on the estimate when no eval measured it."""

    subject: str  # the suite, or the prompt of an estimated gate
    name: str  # pass_rate, max_pass_rate_drop, max_cost_increase_pct, max_p95_latency_ms, ran
    result: GateResult
    estimated: bool = False


@dataclass(frozen=True)
class SuiteCases:
    """A suite's cases of one status (base and head both ran), and those a PR comment shows."""

    suite: str
    cases: list[CaseChange]
    shown: list[CaseChange]


@dataclass(frozen=True)
class FlakyCase:
    suite: str
    case_id: str
    change: CaseChange | None  # None: a head-only run, whose samples disagree


@dataclass(frozen=True)
class LintLine:
    path: str  # relative to the repository root, as GitHub shows it
    finding: Finding


@dataclass(frozen=True)
class RetrievalLine:
    """A suite whose passages were retrieved: the one line a PR comment gives a retrieval change (answers,
    recall, cost per call and per month, the one-off re-index), and per case the sources lost or gained."""

    suite: str
    prompt: str
    comparison: RetrievalComparison
    pass_rate: tuple[float | None, float | None]  # the answers', base and head
    cost_per_call: tuple[float | None, float | None]  # the model call, estimated, retrieved chunks included
    retrieval_cost_per_call: tuple[float | None, float | None]  # estimated: the query's embedding and rerank
    monthly_cost: tuple[float | None, float | None]  # estimated, model and retrieval, at usage's calls_per_day
    usage: bool  # the prompt has usage: (calls_per_day) at head; without it there is no monthly figure


@dataclass
class CheckSummary:
    """Every figure the check's reports show beyond the stages' own data, computed once."""

    rows: list[PromptRow] = field(default_factory=list)
    totals: Totals = Totals()
    spend: Spend = Spend()
    gates: list[Gate] = field(default_factory=list)
    regressed: list[SuiteCases] = field(default_factory=list)
    flaky: list[FlakyCase] = field(default_factory=list)
    changed_prompts: int = 0
    changed_retrievals: int = 0  # retrieval configs
    head_pass_rate: float | None = None  # cases passing at head over every suite that ran
    pass_rate_limit: float | None = None  # the pass_rate gate, when every suite has the same one
    latency_limits: dict[str, float | None] = field(default_factory=dict)  # max_p95_latency_ms, by suite
    lint: list[LintLine] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)  # plain text: each renderer escapes it its own way
    retrieval: list[RetrievalLine] = field(default_factory=list)  # suites whose passages were retrieved


@dataclass
class CheckReport:
    base_label: str
    head_label: str
    lint: LintRun
    linted: list[str]  # the files lint looked at (the change's)
    cost: CostReport
    diff: SpecDiff
    evals: EvalPart
    verdict: CheckVerdict
    problems: list[str]  # spec files that do not load at base or head
    # max_cost_increase_pct on the estimate, per prompt the evals did not measure (a fork's PR, --no-eval)
    cost_gates: list[tuple[str, GateResult]] = field(default_factory=list)
    preexisting: str = "fail"  # gates.preexisting
    # Those of ``problems`` in the head's promptops.yaml: the check ran with the base's settings instead.
    config_problems: list[str] = field(default_factory=list)
    summary: CheckSummary = field(default_factory=CheckSummary)  # set by the stage once the rest is known
