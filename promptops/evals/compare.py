"""Base against head for one suite: per case fixed / regressed / unchanged / new / removed, per
suite the measured figures on each side, a paired test that separates change from noise, and gates."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from promptops.evals import stats
from promptops.evals.suite import CaseRun, SuiteRun


@dataclass(frozen=True)
class SideFigures:
    cases: int
    pass_rate: float
    pass_rate_interval: tuple[float, float]
    mean_score: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    input_tokens_per_call: float | None
    output_tokens_per_call: float | None
    cost_per_call_usd: float | None
    calls: int
    cached_calls: int
    judge_cost_usd: float | None
    flaky: list[str]


@dataclass(frozen=True)
class CaseChange:
    case_id: str
    status: str  # fixed, regressed, unchanged, new, removed
    base: CaseRun | None
    head: CaseRun | None


@dataclass
class SuiteComparison:
    suite: str
    prompt_id: str
    base: SideFigures | None
    head: SideFigures
    cases: list[CaseChange]
    paired: stats.PairedResult | None
    gates: list[tuple[str, stats.GateResult]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(result.passed for _, result in self.gates)


def figures(run: SuiteRun) -> SideFigures:
    attempts = [attempt for case in run.cases.values() for attempt in case.attempts]
    pass_rates = [_rate(case.passes) for case in run.cases.values()]
    answered = [a for a in attempts if a.output is not None]
    passed = sum(rate >= 0.5 for rate in pass_rates)
    costs = [a.cost_usd for a in answered]
    return SideFigures(
        cases=len(run.cases),
        pass_rate=passed / len(pass_rates) if pass_rates else 0.0,
        pass_rate_interval=stats.wilson_interval(passed, len(pass_rates)),
        mean_score=fmean(a.score for a in attempts) if attempts else 0.0,
        # A cached answer keeps the latency measured when it was first made.
        latency_p50_ms=stats.p50(a.latency_ms for a in answered if a.latency_ms is not None),
        latency_p95_ms=stats.p95(a.latency_ms for a in answered if a.latency_ms is not None),
        input_tokens_per_call=_mean(a.input_tokens for a in answered),
        output_tokens_per_call=_mean(a.output_tokens for a in answered),
        cost_per_call_usd=None if any(c is None for c in costs) or not costs else fmean(costs),  # type: ignore[arg-type]
        calls=len(attempts),
        cached_calls=sum(a.cached for a in attempts),
        judge_cost_usd=run.judge_cost_usd,
        flaky=stats.flaky_cases({case_id: case.passes for case_id, case in run.cases.items()}),
    )


def _rate(passes: list[bool]) -> float:
    return sum(passes) / len(passes) if passes else 0.0


def _mean(values: Any) -> float | None:
    known = [v for v in values if v is not None]
    return fmean(known) if known else None


def compare(base: SuiteRun | None, head: SuiteRun, gates: dict[str, Any]) -> SuiteComparison:
    """``gates``: the suite's own over promptops.yaml's (pass_rate, max_pass_rate_drop, max_cost_increase_pct,
    max_p95_latency_ms)."""
    changes = _case_changes(base, head)
    shared = [(c.base.passes, c.head.passes) for c in changes if c.base is not None and c.head is not None]
    paired = stats.paired_test(shared) if base is not None else None
    result = SuiteComparison(head.suite, head.prompt_id, figures(base) if base else None, figures(head), changes, paired)
    result.gates = _gates(result, gates)
    return result


def _case_changes(base: SuiteRun | None, head: SuiteRun) -> list[CaseChange]:
    base_cases = base.cases if base is not None else {}
    changes = []
    for case_id in sorted(set(base_cases) | set(head.cases)):
        old, new = base_cases.get(case_id), head.cases.get(case_id)
        if old is None:
            status = "new"
        elif new is None:
            status = "removed"
        else:
            before, after = _rate(old.passes) >= 0.5, _rate(new.passes) >= 0.5
            status = "fixed" if after and not before else "regressed" if before and not after else "unchanged"
        changes.append(CaseChange(case_id, status, old, new))
    return changes


def _gates(result: SuiteComparison, gates: dict[str, Any]) -> list[tuple[str, stats.GateResult]]:
    head, base = result.head, result.base
    checks = []
    if "pass_rate" in gates:
        checks.append(("pass_rate", stats.min_pass_rate(head.pass_rate, float(gates["pass_rate"]))))
    if "max_pass_rate_drop" in gates and result.paired is not None:
        checks.append(("max_pass_rate_drop", stats.pass_rate_drop_gate(
            base.pass_rate if base else None, head.pass_rate, float(gates["max_pass_rate_drop"]), result.paired)))
    if "max_cost_increase_pct" in gates and base is not None:
        checks.append(("max_cost_increase_pct", stats.max_cost_increase(
            base.cost_per_call_usd, head.cost_per_call_usd, float(gates["max_cost_increase_pct"]))))
    if "max_p95_latency_ms" in gates:
        checks.append(("max_p95_latency_ms", stats.max_p95_latency(head.latency_p95_ms,
                                                                    float(gates["max_p95_latency_ms"]))))
    return checks
