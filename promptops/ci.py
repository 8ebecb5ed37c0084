"""`promptops ci` as a library call: lint, evals, cost and diff of one change, and a verdict.

Each part degrades on its own and says so: with no model API key (a fork's
pull request gets no secrets) the evals are skipped with a reason, while lint,
cost and diff, which need neither secrets nor network, still run. The stage
returns data; rendering and posting are the report's and the CLI's business.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from promptops.config import Workspace
from promptops.diff import SpecDiff, diff_workspaces
from promptops.estimate.cost import CostReport, compare as compare_cost
from promptops.evals.compare import SuiteComparison
from promptops.evals.execute import EvalOptions, run_evaluation
from promptops.evals.runner import CallOutcome, MissingCredentials
from promptops.findings import Severity
from promptops.gitrefs import Ref, changed_files, open_repo, resolve_refs, snapshot
from promptops.lint.engine import LintRun, lint
from promptops.specs import CONFIG_NAME, kind_of

FAIL_ON = ("error", "regression", "never")
EXIT_OK, EXIT_FINDINGS, EXIT_SERVICE = 0, 1, 3
SPEND_CAP_PREFIX = "not run: the spend cap"  # how the runner words a call the cap refused


@dataclass(frozen=True)
class CheckOptions:
    base: str | None = None
    evals: bool = True
    eval_options: EvalOptions = field(default_factory=EvalOptions)
    fail_on: str = "error"  # error: any failure fails the check; regression: only eval gates; never
    from_fork: bool = False  # the pull request comes from a fork: no secrets, say so when evals cannot run


@dataclass
class EvalPart:
    ran: bool
    note: str = ""  # why the evals did not run, or ran only in part
    comparisons: list[SuiteComparison] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unanswered: int = 0  # calls that got no answer after retries
    capped: int = 0  # calls the spend cap refused
    first_error: str = ""


@dataclass(frozen=True)
class Verdict:
    level: str  # pass, warn, fail
    failures: tuple[str, ...]
    warnings: tuple[str, ...]
    exit_code: int
    fail_on: str = "error"


@dataclass
class CheckReport:
    base_label: str
    head_label: str
    lint: LintRun
    linted: list[str]  # the files lint looked at (the change's)
    cost: CostReport
    diff: SpecDiff
    evals: EvalPart
    verdict: Verdict
    problems: list[str]  # spec files that do not load at base or head


def run_check(cwd: Path, options: CheckOptions,
              progress: Callable[[CallOutcome], None] = lambda outcome: None) -> CheckReport:
    """The whole check of the change from ``options.base`` to the working tree.

    Raises RefError or ConfigError when the refs or promptops.yaml cannot be used.
    """
    repo = open_repo(cwd)
    base_ref, head_ref = resolve_refs(repo, options.base, None)
    base_ws = snapshot(repo, base_ref, cwd)
    # The head's files are the pull request's: the settings that guard the run come from the base (SECURITY.md, 1).
    head_ws = snapshot(repo, head_ref, cwd, trusted=base_ws.config)
    paths = lint_targets(Path(repo.working_tree_dir), base_ref, head_ws)
    lint_run = lint(paths, cwd, trusted=base_ws.config) if paths else LintRun()
    # Evals before cost: the cost estimate then uses the output tokens the evals just measured.
    evals = _run_evals(base_ws, head_ws, options, progress)
    cost = compare_cost(base_ws, head_ws, str(base_ref), str(head_ref))
    problems = sorted({str(p) for p in base_ws.problems + head_ws.problems})
    report = CheckReport(str(base_ref), str(head_ref), lint_run, [str(p) for p in paths], cost,
                         diff_workspaces(base_ws, head_ws), evals, Verdict("pass", (), (), EXIT_OK),
                         problems)
    report.verdict = verdict(report, options.fail_on)
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
               progress: Callable[[CallOutcome], None]) -> EvalPart:
    if not options.evals:
        return EvalPart(ran=False, note="evals are turned off for this check (eval: false)")
    try:
        comparisons, skipped = asyncio.run(run_evaluation(base, head, options.eval_options, progress))
    except MissingCredentials as exc:
        why = ("this pull request comes from a fork, and GitHub gives fork runs no secrets"
               if options.from_fork else str(exc))
        return EvalPart(ran=False, note=f"evals skipped: {why}; lint, cost and diff still ran")
    part = EvalPart(ran=True, comparisons=comparisons, skipped=skipped)
    for failure in _unanswered(comparisons):
        if failure.startswith(SPEND_CAP_PREFIX):
            part.capped += 1
        else:
            part.unanswered += 1
            part.first_error = part.first_error or failure
    return part


def _unanswered(comparisons: list[SuiteComparison]) -> list[str]:
    """The reason of every attempt, base or head, that got no answer from the model."""
    reasons = []
    for comparison in comparisons:
        for change in comparison.cases:
            for run in (change.base, change.head):
                for attempt in run.attempts if run else ():
                    if attempt.output is None:
                        reasons.append(attempt.failures[0] if attempt.failures else "no answer")
    return reasons


def verdict(report: CheckReport, fail_on: str) -> Verdict:
    """pass, warn or fail, with the reasons a reviewer reads first, and the exit code ``fail_on`` asks for."""
    failures: list[str] = []
    quality: list[str] = []
    warnings: list[str] = []
    errors = report.lint.errors
    if errors:
        files = len({finding.path for finding in errors})
        failures.append(f"lint found {_count(len(errors), 'error')} in {_count(files, 'file')}")
    failures += [str(f.message) for f in report.cost.findings if f.severity is Severity.ERROR]
    for comparison in report.evals.comparisons:
        failed = [f"{comparison.suite}: {result.reason}" for name, result in comparison.gates if not result.passed]
        quality += failed
        paired = comparison.paired
        if paired is not None and paired.verdict == "regression" and not failed:
            warnings.append(f"{comparison.suite}: {_count(paired.regressed, 'case')} regressed beyond noise "
                            f"(p = {paired.p_value:.2g}) and no gate catches it (set max_pass_rate_drop)")
    evals = report.evals
    if evals.capped:
        failures.append(f"the spend cap stopped {_count(evals.capped, 'model call')}: results are incomplete")
    service = (f"{_count(evals.unanswered, 'model call')} got no answer after retries ({evals.first_error})"
               if evals.unanswered else "")
    warn_lint = len(report.lint.findings) - len(errors)
    if warn_lint:
        warnings.append(f"lint found {_count(warn_lint, 'warning')}")
    if not evals.ran:
        warnings.append(evals.note)
    warnings += [f"not loaded, so not estimated or evaluated: {p}" for p in report.problems]
    level = "fail" if failures or quality or service else "warn" if warnings else "pass"
    reasons = tuple(([service] if service else []) + quality + failures)
    code = _exit_code(fail_on, bool(service), bool(quality), bool(failures))
    return Verdict(level, reasons, tuple(warnings), code, fail_on)


def _exit_code(fail_on: str, service: bool, quality: bool, other: bool) -> int:
    if fail_on == "never":
        return EXIT_OK
    if service:
        return EXIT_SERVICE
    if quality or (other and fail_on == "error"):
        return EXIT_FINDINGS
    return EXIT_OK


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def head_pass_rate(report: CheckReport) -> float | None:
    """Cases passing at head over all suites that ran, or None without evals."""
    total = sum(c.head.cases for c in report.evals.comparisons)
    if not total:
        return None
    return sum(c.head.pass_rate * c.head.cases for c in report.evals.comparisons) / total


def summary_rows(report: CheckReport) -> list[dict[str, Any]]:
    """One row per changed or evaluated prompt: quality from the evals, money from the cost estimate."""
    by_prompt: dict[str, list[SuiteComparison]] = {}
    for comparison in report.evals.comparisons:
        by_prompt.setdefault(comparison.prompt_id, []).append(comparison)
    costs = {change.prompt_id: change for change in report.cost.changes}
    statuses = {item.id: item.status for item in report.diff.prompts}
    changed = {prompt_id for prompt_id, status in statuses.items() if status != "unchanged"}
    rows = []
    for prompt_id in sorted(changed | set(by_prompt)):
        suites = by_prompt.get(prompt_id, [])
        rows.append({
            "prompt": prompt_id,
            "status": statuses.get(prompt_id, "unchanged"),
            "suites": suites,
            "pass_rate": (_pooled_rate(s.base for s in suites), _pooled_rate(s.head for s in suites)),
            "regressed": sum(sum(x.status == "regressed" for x in s.cases) for s in suites),
            "fixed": sum(sum(x.status == "fixed" for x in s.cases) for s in suites),
            "p95": (_worst(s.base.latency_p95_ms if s.base else None for s in suites),
                    _worst(s.head.latency_p95_ms for s in suites)),
            "cost": costs.get(prompt_id),
        })
    return rows


def _pooled_rate(sides: Any) -> float | None:
    known = [side for side in sides if side is not None and side.cases]
    if not known:
        return None
    return sum(side.pass_rate * side.cases for side in known) / sum(side.cases for side in known)


def _worst(values: Any) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None
