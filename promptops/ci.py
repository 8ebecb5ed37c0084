"""`promptops ci` as a library call: lint, evals, cost and diff of one change, and a verdict.

Each part degrades on its own and says so: with no model API key (a fork's
pull request gets no secrets) the evals are skipped with a reason, while lint,
cost and diff, which need neither secrets nor network, still run. The stage
returns data; rendering and posting are the report's and the CLI's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from promptops.config import Workspace
from promptops.diff import diff_workspaces
from promptops.errors import ExitCode
from promptops.estimate.cost import compare_costs, explain_gap
from promptops.evals import stats
from promptops.evals.compare import attempts_of
from promptops.evals.execute import EvalOptions, run_evaluation
from promptops.evals.passages import PassageSource
from promptops.evals.runner import MissingCredentials
from promptops.findings import Severity
from promptops.gitrefs import Ref, changed_files, open_repo, resolve_refs, snapshot
from promptops.lint.engine import empty_run, lint
from promptops.model.check import (
    CheckReport,
    CheckSummary,
    CheckVerdict,
    EvalPart,
    FlakyCase,
    Gate,
    LintLine,
    Money,
    PromptRow,
    RetrievalLine,
    Spend,
    SuiteCases,
    Totals,
)
from promptops.model.cost import Change
from promptops.model.evals import CallOutcome, CaseStatus, Failure, GateResult, SideFigures, SuiteComparison
from promptops.report.formatting import money
from promptops.report.lint import repository_path
from promptops.specs import CONFIG_NAME, kind_of

MAX_REGRESSED_SHOWN = 20  # regressed cases a PR comment shows per suite; the rest are counted


@dataclass(frozen=True)
class CheckOptions:
    base: str | None = None
    evals: bool = True
    eval_options: EvalOptions = field(default_factory=EvalOptions)
    fail_on: str = "error"  # error: any failure fails the check; regression: only eval gates; never
    from_fork: bool = False  # the pull request comes from a fork: no secrets, say so when evals cannot run


def run_check(cwd: Path, options: CheckOptions,
              progress: Callable[[CallOutcome], None] = lambda outcome: None) -> CheckReport:
    """The whole check of the change from ``options.base`` to the working tree.

    Raises RefError or ConfigError when the refs or promptops.yaml cannot be used.
    """
    with open_repo(cwd) as repo:  # closed: its git cat-file processes end here
        base_ref, head_ref = resolve_refs(repo, options.base, None)
        base_ws = snapshot(repo, base_ref, cwd)
        # The head's files are the pull request's: the settings that guard the run come from the base (SECURITY.md, 1).
        head_ws = snapshot(repo, head_ref, cwd, trusted=base_ws.config)
        repo_root = repo.root
    paths = lint_targets(repo_root, base_ref, head_ws)
    lint_run = lint(paths, cwd, trusted=base_ws.config) if paths else empty_run()
    # Evals before cost: the cost estimate then uses the output tokens the evals just measured.
    evals = _run_evals(base_ws, head_ws, options, progress, str(base_ref))
    cost = compare_costs(base_ws, head_ws, str(base_ref), str(head_ref))
    problems = sorted({str(p) for p in base_ws.problems + head_ws.problems})
    report = CheckReport(str(base_ref), str(head_ref), lint_run, [str(p) for p in paths], cost,
                         diff_workspaces(base_ws, head_ws), evals, CheckVerdict("pass", (), (), ExitCode.OK),
                         problems, preexisting=head_ws.config.gates.preexisting,
                         config_problems=sorted({str(p) for p in head_ws.problems if kind_of(p.path) == "config"}))
    report.cost_gates = estimate_gates(report, head_ws)
    report.verdict = verdict(report, options.fail_on)
    report.summary = summarise(report)
    return report


def lint_targets(repo_root: Path, base: Ref, head: Workspace) -> list[Path]:
    """The change's spec files that still exist; the whole project when promptops.yaml changed."""
    root = head.config.root
    changed = [repo_root / name for name in changed_files(repo_root, base)]
    inside = [path for path in changed if path.is_relative_to(root) and path.is_file()]
    if any(path.name == CONFIG_NAME for path in inside):
        return [root]
    datasets = {(suite.source.path.parent / suite.dataset).resolve(): suite.source.path
                for suite in head.suites if suite.dataset and suite.source.path is not None}
    targets = {path for path in inside if kind_of(path) is not None}
    # A changed dataset is checked through the suite that reads it.
    targets |= {datasets[path.resolve()] for path in inside if path.resolve() in datasets}
    return sorted(targets)


def _run_evals(base: Workspace, head: Workspace, options: CheckOptions,
               progress: Callable[[CallOutcome], None], base_label: str) -> EvalPart:
    if not options.evals:
        return EvalPart(ran=False, note="evals are turned off for this check (eval: false)")
    try:
        eval_options = replace(options.eval_options, base_label=base_label,
                               passages=options.eval_options.passages or retrieved_passages(base))
        comparisons, skipped = asyncio.run(run_evaluation(base, head, eval_options, progress))
    except MissingCredentials as exc:
        why = ("this pull request comes from a fork, and GitHub gives fork runs no secrets"
               if options.from_fork else str(exc))
        return EvalPart(ran=False, note=f"evals skipped: {why}; lint, cost and diff still ran")
    part = EvalPart(ran=True, comparisons=comparisons, skipped=skipped)
    for attempt in attempts_of(comparisons):
        if attempt.failure is Failure.SPEND_CAP:
            part.capped += 1
        elif attempt.failure is Failure.NO_PASSAGES:
            part.unretrieved += 1
            part.first_retrieval_error = part.first_retrieval_error or (attempt.failures or ("no passages",))[0]
        elif attempt.failure is Failure.NO_ANSWER:
            part.unanswered += 1
            part.first_error = part.first_error or (attempt.failures[0] if attempt.failures else "no answer")
    return part


def retrieved_passages(trusted: Workspace) -> PassageSource:
    """The retrieval stage as the evals' passage source (imported here: it brings numpy); ``trusted`` (the
    base) decides which external index stores may be used."""
    from promptops.retrieval.evalcases import RetrievedPassages

    return RetrievedPassages(trusted)


def estimate_gates(report: CheckReport, head: Workspace) -> list[tuple[str, GateResult]]:
    """``max_cost_increase_pct`` on the estimate, for each changed prompt no eval measured.

    Without an API key (every fork's PR) or with --no-eval no eval runs, and a prompt whose cost
    per call rises by 1,500% must still meet the gate: the estimate from the files stands in
    for the measurement. The limit is the strictest of promptops.yaml's and the prompt's suites'.
    """
    measured = {c.prompt_id for c in report.evals.comparisons if c.base is not None}
    limits = {suite.prompt: suite.gates.max_cost_increase_pct for suite in head.suites
              if suite.gates.max_cost_increase_pct is not None}
    default = head.config.gates.max_cost_increase_pct
    gates = []
    for change in report.cost.changes:
        if change.status != "changed" or change.prompt_id in measured:
            continue
        candidates = [value for value in (default, limits.get(change.prompt_id)) if value is not None]
        if not candidates:
            continue
        assert change.base is not None and change.head is not None
        gates.append((change.prompt_id, stats.max_cost_increase(change.base.cost_per_call, change.head.cost_per_call,
                                                                float(min(candidates)), kind="estimated")))
    return gates


def verdict(report: CheckReport, fail_on: str) -> CheckVerdict:
    """pass, warn or fail, with the reasons a reviewer reads first, and the exit code ``fail_on`` asks for.

    A gate that fails on the base as well is said as such ("also fails on main") and, with
    ``gates.preexisting: warn``, warns instead of failing the check.
    """
    failures: list[str] = []
    quality: list[str] = []
    warnings: list[str] = []
    errors = report.lint.errors
    if errors:
        files = len({finding.path for finding in errors})
        failures.append(f"lint found {_count(len(errors), 'error')} in {_count(files, 'file')}")
    for finding in report.cost.findings:
        if finding.severity is Severity.ERROR:
            _file_gate(str(finding.message), (finding.path, finding.code) in report.cost.preexisting,
                       report.preexisting, failures, warnings)
    for comparison in report.evals.comparisons:
        for _, result in comparison.gates:
            if not result.passed:
                _file_gate(f"{comparison.suite}: {result.reason}", result.preexisting, report.preexisting,
                           quality, warnings)
        paired = comparison.paired
        if (paired is not None and paired.verdict == "regression"
                and all(result.passed for _, result in comparison.gates)):
            warnings.append(f"{comparison.suite}: a regression beyond noise ({paired.evidence()}) that no gate "
                            "catches (set max_pass_rate_drop)")
        reindex = comparison.retrieval.reindex if comparison.retrieval is not None else None
        if reindex:
            cost = comparison.retrieval.reindex_cost_usd if comparison.retrieval is not None else None
            one_off = f" (one-off, est. {money(cost)})" if cost is not None else ""
            warnings.append(f"{comparison.suite}: {reindex}{one_off}")
        if comparison.latency is not None and comparison.latency.changed and (comparison.latency.shift_ms or 0) > 0:
            warnings.append(f"{comparison.suite}: latency rises beyond noise, by {comparison.latency.shift_ms:,.0f} ms "
                            "at the median (p = {:.2g})".format(comparison.latency.p_value or 0))
    for prompt_id, result in report.cost_gates:
        if not result.passed:
            quality.append(f"{prompt_id}: {result.reason} (no eval measured it)")
    evals = report.evals
    if evals.capped:
        failures.append(f"the spend cap stopped {_count(evals.capped, 'model call')}: results are incomplete")
    service = "; ".join(
        ([f"{_count(evals.unanswered, 'model call')} got no answer after retries ({evals.first_error})"]
         if evals.unanswered else [])
        + ([f"{_count(evals.unretrieved, 'model call')} {evals.first_retrieval_error}: results are incomplete"]
           if evals.unretrieved else []))
    warn_lint = len(report.lint.findings) - len(errors)
    if warn_lint:
        warnings.append(f"lint found {_count(warn_lint, 'warning')}")
    if not evals.ran:
        warnings.append(evals.note)
    config = report.config_problems
    if config:
        more = f" (and {len(config) - 1} more; see the lint findings)" if len(config) > 1 else ""
        warnings.append(f"the change's promptops.yaml cannot be used, so the check ran with the base's settings: "
                        f"{config[0]}{more}")
    warnings += [f"not loaded, so not estimated or evaluated: {p}" for p in report.problems if p not in config]
    level = "fail" if failures or quality or service else "warn" if warnings else "pass"
    reasons = tuple(([service] if service else []) + quality + failures)
    code = _exit_code(fail_on, bool(service), bool(quality), bool(failures))
    return CheckVerdict(level, reasons, tuple(warnings), code, fail_on)


def _file_gate(reason: str, preexisting: bool, policy: str, failures: list[str], warnings: list[str]) -> None:
    """A failed gate fails the check, unless it fails on the base as well and gates.preexisting says warn."""
    if preexisting and policy == "warn":
        warnings.append(f"{reason} (gates.preexisting: warn)")
    else:
        failures.append(reason)


def _exit_code(fail_on: str, service: bool, quality: bool, other: bool) -> ExitCode:
    if fail_on == "never":
        return ExitCode.OK
    if service:
        return ExitCode.SERVICE
    if quality or (other and fail_on == "error"):
        return ExitCode.FINDINGS
    return ExitCode.OK


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def summarise(report: CheckReport) -> CheckSummary:
    """Every figure the reports show beyond the stages' own data, computed once: renderers only format it."""
    comparisons = report.evals.comparisons
    return CheckSummary(
        rows=prompt_rows(report),
        totals=_totals(report),
        spend=_spend([side for c in comparisons for side in (c.base, c.head) if side is not None]),
        gates=[Gate(c.suite, name, result) for c in comparisons for name, result in c.gates]
        + [Gate(prompt, "max_cost_increase_pct", result, estimated=True) for prompt, result in report.cost_gates],
        regressed=[SuiteCases(c.suite, cases, cases[:MAX_REGRESSED_SHOWN]) for c in comparisons
                   for cases in [c.with_status(CaseStatus.REGRESSED)] if cases],
        flaky=[FlakyCase(c.suite, change.case_id, change)
               for c in comparisons for change in c.with_status(CaseStatus.FLAKY)]
        + [FlakyCase(c.suite, case, None) for c in comparisons if c.paired is None for case in c.head.flaky],
        changed_prompts=sum(item.status != "unchanged" for item in report.diff.prompts),
        changed_retrievals=sum(item.status != "unchanged" for item in report.diff.retrievals),
        head_pass_rate=head_pass_rate(report),
        pass_rate_limit=_shared_limit(comparisons, "pass_rate"),
        latency_limits={c.suite: _shared_limit([c], "max_p95_latency_ms") for c in comparisons},
        lint=[LintLine(repository_path(finding.path), finding) for finding in report.lint.findings],
        assumptions=_assumptions(report),
        retrieval=_retrieval_lines(report),
    )


def _retrieval_lines(report: CheckReport) -> list[RetrievalLine]:
    """One line per suite whose passages were retrieved, with the prompt's estimated cost beside it."""
    estimates = {change.prompt_id: change for change in report.cost.changes}
    lines = []
    for comparison in report.evals.comparisons:
        if comparison.retrieval is None:
            continue
        estimate = estimates.get(comparison.prompt_id)
        sides = (estimate.base, estimate.head) if estimate is not None else (None, None)
        lines.append(RetrievalLine(
            comparison.suite, comparison.prompt_id, comparison.retrieval,
            (comparison.base.pass_rate if comparison.base else None, comparison.head.pass_rate),
            (sides[0].cost_per_call if sides[0] else None, sides[1].cost_per_call if sides[1] else None),
            (sides[0].retrieval_cost_per_call if sides[0] else None,
             sides[1].retrieval_cost_per_call if sides[1] else None),
            (sides[0].monthly_cost if sides[0] else None, sides[1].monthly_cost if sides[1] else None),
            usage=sides[1] is not None and sides[1].calls_per_day is not None))
    return lines


def _totals(report: CheckReport) -> Totals:
    sides = [side for c in report.evals.comparisons for side in (c.base, c.head) if side is not None]
    return Totals(
        changed_files=sum(item.status != "unchanged" for item in (*report.diff.prompts, *report.diff.retrievals)),
        linted_files=report.lint.files,
        suites=len(report.evals.comparisons),
        head_cases=sum(c.head.cases for c in report.evals.comparisons),
        answers=sum(s.calls for s in sides),
        new_calls=sum(s.new_calls for s in sides),
        cached_calls=sum(s.cached_calls for s in sides),
        shared_calls=sum(s.shared_calls for s in sides),
        confirmation_calls=sum(s.confirmation_calls for s in sides),
    )


def _spend(sides: list[SideFigures]) -> Spend:
    # The judges' include those of judged context precision and recall (retrieval.judge), priced apart too.
    context = [s.retrieval.judge_cost_usd for s in sides if s.retrieval is not None and s.retrieval.judge_calls]
    return Spend(_money([s.new_spend_usd for s in sides]), _money([s.judge_cost_usd for s in sides] + context))


def _money(values: list[float | None]) -> Money:
    known = [v for v in values if v is not None]
    return Money(sum(known), unpriced=len(known) < len(values))


def _shared_limit(comparisons: list[SuiteComparison], name: str) -> float | None:
    """A gate's limit where every suite given shares it (a chart draws one line), else None."""
    values = {float(value) for c in comparisons for value in [c.gate_limits.get(name)] if value is not None}
    return values.pop() if len(values) == 1 else None


def _assumptions(report: CheckReport) -> list[str]:
    notes = ["Cost is estimated from the files before any call, or measured on eval answers (the provider's "
             "token counts at the price map's rates, cached input at the cached-input rate)"]
    notes += [f"{c.prompt_id} estimated output tokens: {c.head.output_basis}"
              for c in report.cost.changes if c.head is not None and c.status != "unchanged"]
    notes += report.cost.assumptions
    if report.evals.ran:
        confirm = max((c.confirm for c in report.evals.comparisons), default=0)
        notes.append(f"Every case that flipped or whose samples disagree was asked {confirm} more time(s) a side; "
                     "a case is regressed only when every base sample passes and every head sample fails"
                     if confirm else "Flips are not confirmed (eval.confirm: 0)")
        notes.append("Latency is timed from sending a call to the end of its answer, in this run only: cached "
                     "answers and each worker's first call to a provider (client warm-up) are not timed")
    return notes


def head_pass_rate(report: CheckReport) -> float | None:
    """Cases passing at head over all suites that ran, or None without evals."""
    total = sum(c.head.cases for c in report.evals.comparisons)
    if not total:
        return None
    return sum(c.head.pass_rate * c.head.cases for c in report.evals.comparisons) / total


def prompt_rows(report: CheckReport) -> list[PromptRow]:
    """One row per changed or evaluated prompt: quality and latency from the evals, money from both the
    estimate (files) and the measurement (eval answers)."""
    by_prompt: dict[str, list[SuiteComparison]] = {}
    for comparison in report.evals.comparisons:
        by_prompt.setdefault(comparison.prompt_id, []).append(comparison)
    estimates = {change.prompt_id: change for change in report.cost.changes}
    statuses = {item.id: item.status for item in report.diff.prompts}
    changed = {prompt_id for prompt_id, status in statuses.items() if status != "unchanged"}
    return [_row(prompt_id, statuses.get(prompt_id, "unchanged"), by_prompt.get(prompt_id, []),
                 estimates.get(prompt_id)) for prompt_id in sorted(changed | set(by_prompt))]


def _row(prompt_id: str, status: str, suites: list[SuiteComparison], estimate: Change | None) -> PromptRow:
    changes = [change for suite in suites for change in suite.cases]
    counts = [suite.counts() for suite in suites]
    measured = (_pooled_cost([s.base for s in suites]), _pooled_cost([s.head for s in suites]))
    verdicts = [s.paired.verdict for s in suites if s.paired is not None]
    verdict = next((v for v in ("regression", "improvement", "within noise", "no change") if v in verdicts), "")
    return PromptRow(
        prompt=prompt_id, status=status, suites=suites,
        pass_rate=(_pooled_rate(s.base for s in suites), _pooled_rate(s.head for s in suites)),
        regressed=sum(count[CaseStatus.REGRESSED] for count in counts),
        fixed=sum(count[CaseStatus.FIXED] for count in counts),
        flaky=sum(count[CaseStatus.FLAKY] for count in counts),
        confirmed=all(c.confirmed for c in changes if c.status in (CaseStatus.REGRESSED, CaseStatus.FIXED)),
        verdict=verdict,
        p95=(_worst(s.base.latency_p95_ms if s.base else None for s in suites),
             _worst(s.head.latency_p95_ms for s in suites)),
        latency_changed=any(s.latency is not None and s.latency.changed for s in suites),
        estimate=estimate, measured=measured, cost_gap=_gap(estimate, suites),
    )


def _gap(estimate: Change | None, suites: list[SuiteComparison]) -> str | None:
    """Why the estimated and measured cost per call at head differ by more than 2x, if they do."""
    if estimate is None or estimate.head is None or not suites:
        return None
    heads = [s.head for s in suites]
    return explain_gap(estimate.head, _pooled_cost(heads), _pooled(heads, "input_tokens_per_call"),
                       _pooled(heads, "output_tokens_per_call"))


def _pooled_rate(sides: Iterable[SideFigures | None]) -> float | None:
    known = [side for side in sides if side is not None and side.cases]
    if not known:
        return None
    return sum(side.pass_rate * side.cases for side in known) / sum(side.cases for side in known)


def _pooled_cost(sides: Sequence[SideFigures | None]) -> float | None:
    return _pooled(sides, "cost_per_call_usd")


def _pooled(sides: Sequence[SideFigures | None], name: str) -> float | None:
    """A per-call figure over several suites' sides, weighted by their calls; None if any is unknown."""
    known = [side for side in sides if side is not None and side.calls]
    if not known or any(getattr(side, name) is None for side in known):
        return None
    weighted: float = sum(getattr(side, name) * side.calls for side in known)
    return weighted / sum(side.calls for side in known)


def _worst(values: Any) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None
