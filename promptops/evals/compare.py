"""Base against head for one suite: per case regressed / fixed / flaky / unchanged / new / removed,
per suite the measured figures on each side, the verdict that separates change from noise
(``stats.paired_test``), a latency comparison over fresh calls, and the gates."""

from __future__ import annotations

from collections.abc import Iterable
from statistics import fmean

from promptops.evals import stats
from promptops.evals.recall import compare_retrieval, recall_gates, retrieval_figures
from promptops.evals.suite import SuiteRun
from promptops.model.evals import (
    Attempt,
    CaseChange,
    CaseStatus,
    Failure,
    GateResult,
    SideFigures,
    SuiteComparison,
    fresh_latencies,
)
from promptops.specs import Gates


def figures(run: SuiteRun) -> SideFigures:
    attempts = [attempt for case in run.cases.values() for attempt in case.attempts]
    samples = {case_id: case.passes for case_id, case in run.cases.items() if case.passes}
    passed = sum(stats.passes(outcomes) for outcomes in samples.values())
    answered = [a for a in attempts if a.output is not None]
    fresh = [a for a in attempts if a.fresh]
    timed = [a.timed for a in attempts if a.timed is not None]
    calls = [a for a in attempts if a.failure is not Failure.NOT_RENDERED]
    p50 = stats.quantile_with_interval(timed, 50)
    p95 = stats.quantile_with_interval(timed, 95)
    return SideFigures(
        cases=len(samples),
        pass_rate=passed / len(samples) if samples else 0.0,
        pass_rate_interval=stats.wilson_interval(passed, len(samples)),
        mean_score=fmean(a.score for a in attempts if a.is_sample) if any(a.is_sample for a in attempts) else 0.0,
        latency_p50_ms=p50.value if p50 else None,
        latency_p95_ms=p95.value if p95 else None,
        latency_p50_interval_ms=(p50.low, p50.high) if p50 else (None, None),
        latency_p95_interval_ms=(p95.low, p95.high) if p95 else (None, None),
        latency_timed=len(timed),
        input_tokens_per_call=_mean(a.input_tokens for a in answered),
        output_tokens_per_call=_mean(a.output_tokens for a in answered),
        cost_per_call_usd=_mean_or_unknown([a.cost_usd for a in answered]),
        calls=len(calls),
        cached_calls=sum(a.cached for a in calls),
        shared_calls=sum(a.shared and not a.cached for a in calls),
        new_calls=len(fresh),
        confirmation_calls=sum(case.confirmations for case in run.cases.values()),
        unanswered=sum(a.failure in (Failure.NO_ANSWER, Failure.NO_PASSAGES) for a in attempts),
        capped=sum(a.failure is Failure.SPEND_CAP for a in attempts),
        new_spend_usd=_sum_or_unknown([a.cost_usd for a in fresh]),
        judge_cost_usd=run.judge_cost_usd,
        flaky=stats.flaky_cases(samples),
        retrieval=retrieval_figures(run.retrieval),
    )


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return fmean(known) if known else None


def _mean_or_unknown(values: list[float | None]) -> float | None:
    """The mean, or None when there is nothing, or any value is unknown (an unpriced model)."""
    if not values or any(v is None for v in values):
        return None
    return fmean(v for v in values if v is not None)


def _sum_or_unknown(values: list[float | None]) -> float | None:
    if any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


def compare_suites(base: SuiteRun | None, head: SuiteRun, gates: Gates, *, confirm: int = 0,
            base_label: str = "the base") -> SuiteComparison:
    """``gates``: the suite's own over promptops.yaml's (pass_rate, max_pass_rate_drop, max_cost_increase_pct,
    max_p95_latency_ms)."""
    changes = _case_changes(base, head)
    pairs = [stats.CasePair(tuple(c.base.passes), tuple(c.head.passes), c.base.initial_samples, c.head.initial_samples)
             for c in changes if c.base is not None and c.head is not None and c.base.passes and c.head.passes]
    paired = stats.paired_test(pairs) if base is not None else None
    latency = (stats.latency_change(fresh_latencies(base.cases.values()), fresh_latencies(head.cases.values()))
               if base is not None else None)
    result = SuiteComparison(head.suite, head.prompt_id, figures(base) if base else None, figures(head), changes,
                             paired, latency, repeat=head.repeat, confirm=confirm if base is not None else 0,
                             gate_limits=gates.limits(),
                             retrieval=compare_retrieval(base.retrieval if base else None, head.retrieval, changes))
    result.gates = _gates(result, gates, base_label) if head.cases or not head.problems else _not_run(head)
    if head.cases or not head.problems:
        result.gates += recall_gates(result.retrieval, gates, base_label)
    return result


def _not_run(head: SuiteRun) -> list[tuple[str, GateResult]]:
    """A suite that could not run at head fails for that reason, not for a pass rate of no case."""
    return [("ran", GateResult(False, "; ".join(head.problems)))]


def _case_changes(base: SuiteRun | None, head: SuiteRun) -> list[CaseChange]:
    base_cases = base.cases if base is not None else {}
    changes = []
    for case_id in sorted(set(base_cases) | set(head.cases)):
        old, new = base_cases.get(case_id), head.cases.get(case_id)
        if old is None:
            status = CaseStatus.NEW
        elif new is None:
            status = CaseStatus.REMOVED
        elif not old.passes or not new.passes:
            status = CaseStatus.UNANSWERED  # a side got no answer: nothing to compare
        else:
            status = stats.case_status(old.passes, new.passes)
        changes.append(CaseChange(case_id, status, old, new))
    return changes


def _gates(result: SuiteComparison, gates: Gates, base_label: str) -> list[tuple[str, GateResult]]:
    head, base = result.head, result.base
    results = []
    if gates.pass_rate is not None:
        results.append(("pass_rate", stats.min_pass_rate(head.pass_rate, gates.pass_rate,
                                                        base.pass_rate if base else None, base_label)))
    if gates.max_pass_rate_drop is not None and result.paired is not None:
        results.append(("max_pass_rate_drop", stats.pass_rate_drop_gate(
            base.pass_rate if base else None, head.pass_rate, gates.max_pass_rate_drop, result.paired)))
    if gates.max_cost_increase_pct is not None and base is not None:
        results.append(("max_cost_increase_pct", stats.max_cost_increase(
            base.cost_per_call_usd, head.cost_per_call_usd, gates.max_cost_increase_pct)))
    if gates.max_p95_latency_ms is not None:
        results.append(("max_p95_latency_ms", stats.max_p95_latency(
            head.latency_p95_ms, gates.max_p95_latency_ms, base.latency_p95_ms if base else None,
            base_label)))
    return results


def attempts_of(comparisons: Iterable[SuiteComparison]) -> Iterable[Attempt]:
    """Every attempt of every side of every suite."""
    for comparison in comparisons:
        for change in comparison.cases:
            for run in (change.base, change.head):
                yield from run.attempts if run is not None else ()


def mark_incomplete(comparisons: list[SuiteComparison]) -> int:
    """Fail the gate `answered` of each suite with model calls, base or head, that got no answer after retries,
    and the gate `within_spend_cap` of each suite whose calls the spend cap refused (or the retrieval of their
    passages: such a case is not sent either, and its reason names the retrieval config), and the gate `retrieved`
    of each suite with cases not sent because retrieving their passages failed, so that no report of an
    incomplete run says PASS; return how many calls got no answer (those cases' included). A case whose prompt
    does not render was never sent: neither is a call that got no answer."""
    total = 0
    for comparison in comparisons:
        attempts = [(change.case_id, attempt) for change in comparison.cases for run in (change.base, change.head)
                    if run is not None for attempt in run.attempts]
        unanswered = [f"{case_id}: {attempt.failures[0] if attempt.failures else 'no answer'}"
                      for case_id, attempt in attempts if attempt.failure is Failure.NO_ANSWER]
        capped = [(case_id, attempt.failures[0] if attempt.failures else "not sent")
                  for case_id, attempt in attempts if attempt.failure is Failure.SPEND_CAP]
        unretrieved = [(case_id, attempt.failures[0] if attempt.failures else "not sent")
                       for case_id, attempt in attempts if attempt.failure is Failure.NO_PASSAGES]
        if unanswered:
            comparison.gates.append(("answered", GateResult(
                False, f"{len(unanswered)} model call(s) got no answer after retries, e.g. {unanswered[0]}")))
        if capped:
            comparison.gates.append(("within_spend_cap", GateResult(
                False, f"the spend cap stopped {len(capped)} model call(s), e.g. for case {capped[0][0]} "
                       f"({capped[0][1]}): the results are incomplete (raise eval.max_cost_usd or --max-cost)")))
        if unretrieved:
            comparison.gates.append(("retrieved", GateResult(
                False, f"{len({case_id for case_id, _ in unretrieved})} case(s) got no passages, e.g. "
                       f"{unretrieved[0][0]} ({unretrieved[0][1]}): the results are incomplete")))
        total += len(unanswered) + len(unretrieved)
    return total
