"""Renderers for a CheckReport: the PR comment and step summary (Markdown), a standalone HTML page
with small charts, and JSON.

They read the check as the stage built it (promptops.model.check: its figures computed once by
``ci.summarise``) and only format it: a new figure is a field of the model and a line in the templates.

Everything that comes from a pull request (ids, case inputs, model output) is
untrusted: it reaches Markdown only through ``safety.inline`` or
``safety.block`` and HTML only through Jinja's autoescape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from promptops.github import COMMENT_LIMIT
from promptops.model.check import CheckReport, Money, PromptRow, RetrievalLine, SuiteCases, Totals
from promptops.model.cost import Change
from promptops.model.evals import CaseChange, CaseRun, SideFigures, SuiteComparison
from promptops.report import cost as cost_report, diff as diff_report, evals as evals_report, versions
from promptops.report.evals import latency_text, samples_text
from promptops.report.formatting import change_percent, money, percent, signed
from promptops.report.jinja import render_template
from promptops.report.safety import block, inline

SUMMARY_LIMIT = 250_000  # a step summary may hold 1 MiB: characters of up to 4 bytes each
ICONS = {"pass": "✅", "warn": "⚠️", "fail": "❌"}
FOOTER = "This comment is updated on every push."
MAX_SOURCE_CHANGES = 20  # cases with moved sources or judged figures a comment lists per suite; the rest are counted


@dataclass
class Detail:
    summary: str
    body: str
    trimmed: bool = False  # the body gave way to a note, to fit the comment


def headline(report: CheckReport) -> str:
    """The verdict in one line: pass, warn or fail, and why."""
    verdict = report.verdict
    reasons = verdict.failures or verdict.warnings
    if verdict.level == "pass":
        return f"Pass: {_good_news(report)}"
    first = reasons[0]
    more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
    return f"{verdict.level.capitalize()}: {first}{more}"


def _good_news(report: CheckReport) -> str:
    rate = report.summary.head_pass_rate
    quality = f"evals pass ({_pct(rate)} of cases at head)" if rate is not None else "no eval suite was affected"
    summary = report.summary
    retrievals = f" and {summary.changed_retrievals} retrieval config(s)" if summary.changed_retrievals else ""
    return f"{summary.changed_prompts} prompt(s){retrievals} changed, {quality}; {cost_report.headline(report.cost)}"


# -- Markdown --------------------------------------------------------------------------------

def render_markdown(report: CheckReport, *, limit: int = COMMENT_LIMIT, full_report: str = "",
                    footer: str = FOOTER) -> str:
    """The PR comment (or step summary), under ``limit`` characters: over it, the largest
    details give way to a note saying where the full report is."""
    details = _details(report)
    where = f" The full report: {full_report}." if full_report else ""
    summary = report.summary
    while True:
        text = render_template("check.md.j2", report=report, headline=headline(report), icon=ICONS,
                               rows=[_row(r) for r in summary.rows], details=details,
                               cost_headline=cost_report.headline(report.cost), totals=_totals(report),
                               gaps=[(inline(r.prompt, 80), inline(r.cost_gap, 600))
                                     for r in summary.rows if r.cost_gap],
                               gates=_gates(report), footer=footer,
                               retrieval=[(inline(retrieval_text(line), 900),
                                           [inline(text, 400) for text in cases[:MAX_SOURCE_CHANGES]],
                                           max(0, len(cases) - MAX_SOURCE_CHANGES))
                                          for line in summary.retrieval for cases in [source_changes(line)]],
                               assumptions=[inline(note, 400) for note in summary.assumptions])
        cuttable = [d for d in details if not d.trimmed]
        if len(text) <= limit or not cuttable:
            return text if len(text) <= limit else text[: limit - 200] + "\n\n_(report cut at GitHub's size limit)_\n"
        biggest = max(cuttable, key=lambda d: len(d.body))
        biggest.body = (f"_Trimmed to keep this comment under GitHub's size limit ({len(biggest.body):,} characters)."
                        f"{where}_")
        biggest.trimmed = True


def _row(row: PromptRow) -> list[str]:
    return [inline(row.prompt, 80) + _status(row), *_figures(row)]


def _status(row: PromptRow) -> str:
    return "" if row.status in ("modified", "unchanged") else f" ({row.status})"


def _figures(row: PromptRow) -> list[str]:
    """The summary table's cells after the prompt: the same in Markdown and HTML."""
    base_rate, head_rate = row.pass_rate
    base_p95, head_p95 = row.p95
    evaluated = bool(row.suites)
    return [
        _arrow(_pct(base_rate), _pct(head_rate)) if evaluated else "not evaluated",
        _regressions(row) if evaluated else "–",
        _latency_cell(row) if evaluated else "–",
        _cost_cell(row),
        _monthly(row.estimate),
    ]


def _regressions(row: PromptRow) -> str:
    """Confirmed regressions (fixes netted in the verdict, shown apart), flaky cases named apart."""
    if not any(s.paired is not None for s in row.suites):
        return "head only"
    text = f"{row.regressed} confirmed" if row.regressed and row.confirmed else str(row.regressed)
    if row.regressed and not row.confirmed:
        text += " unconfirmed"
    extra = [f"{row.fixed} fixed"] * bool(row.fixed) + [f"{row.flaky} flaky"] * bool(row.flaky)
    if extra:
        text += " (" + ", ".join(extra) + ")"
    if row.verdict == "within noise" and row.regressed:
        text += ", within noise"
    return text


def _latency_cell(row: PromptRow) -> str:
    base_p95, head_p95 = row.p95
    if base_p95 is None and head_p95 is None:
        return "not timed"  # every answer from the cache, or no call made
    text = _arrow(_ms(base_p95), _ms(head_p95))
    if base_p95 is not None and head_p95 is not None:
        text += ", changed beyond noise" if row.latency_changed else ", within noise"
    return text


def _cost_cell(row: PromptRow) -> str:
    """Cost per call, estimated from the files and measured on eval answers, each labelled."""
    change = row.estimate
    parts = []
    if change is not None and (change.base or change.head):
        parts.append("est. " + _arrow(money(change.base.cost_per_call) if change.base else "–",
                                      money(change.head.cost_per_call) if change.head else "–")
                     + (" plus retrieval " + _arrow(money(change.base.retrieval_cost_per_call) if change.base else "–",
                                                    money(change.head.retrieval_cost_per_call) if change.head else "–")
                        if cost_report.any_retrieval([change]) else ""))
    base, head = row.measured
    if head is not None or base is not None:
        parts.append("measured " + _arrow(money(base) if base is not None else "–", money(head)))
    return " · ".join(parts) or "–"


def _monthly(change: Change | None) -> str:
    if change is None:
        return "–"
    d = change.delta("monthly_cost")
    if d.absolute is None:
        side = change.head or change.base
        return "unknown" if side and side.calls_per_day else "no usage set"
    return f"est. {signed(d.absolute, 'usd')}{change_percent(d)}"


def retrieval_text(line: RetrievalLine) -> str:
    """A retrieval change in one line (plain text; Markdown escapes it, HTML autoescapes it)."""
    r = line.comparison
    base, head = r.base, r.head
    if base is not None and base.k != head.k:
        recall = f"recall@{base.k} {_pct(base.recall)} → recall@{head.k} {_pct(head.recall)}"
    else:
        recall = f"recall@{head.k} " + _arrow(_pct(base.recall) if base else "–", _pct(head.recall))
    verdict = f" ({r.verdict}: {evals_report.source_verdict(r)})" if base else ""
    parts = [f"{line.suite} ({head.config}): answers pass " + _arrow(_pct(line.pass_rate[0]), _pct(line.pass_rate[1])),
             f"{recall} over {head.scored} case(s) with expected sources{verdict}",
             *([judged] if (judged := evals_report.judged_text(r, "→")) else []),
             "cost per call est. " + _arrow(_usd(line.cost_per_call[0]), _usd(line.cost_per_call[1]))
             + " plus retrieval " + _arrow(_usd(line.retrieval_cost_per_call[0]), _usd(line.retrieval_cost_per_call[1]))
             + " a query",
             ("per month est. (model and retrieval) " + _arrow(_usd(line.monthly_cost[0]), money(line.monthly_cost[1])))
             if line.usage else "per month: no usage set",
             f"re-index est. {_usd(r.reindex_cost_usd)} one-off ({r.reindex_tokens:,} corpus tokens): {r.reindex}"
             if r.reindex else
             "no re-index (embedding and chunking unchanged)"]
    return " · ".join(parts)


def source_changes(line: RetrievalLine) -> list[str]:
    """Per case whose found sources moved: what it lost and gained, its recall, its judged figures when they moved
    too, and how its answer moved; then the cases whose judged figures alone moved, the largest fall first."""
    judged = {move.case_id: move for move in line.comparison.judged_moves}
    texts = []
    for change in line.comparison.changes:
        moved = ([f"lost {', '.join(change.lost)}"] * bool(change.lost)
                 + [f"gained {', '.join(change.gained)}"] * bool(change.gained))
        move = judged.pop(change.case_id, None)
        figures = f"; {evals_report.judged_move_text(move, '→')}" if move is not None else ""
        answer = f"; answer {change.answer}" if change.answer is not None else ""
        texts.append(f"{change.case_id}: {'; '.join(moved)} (recall {_pct(change.base_recall)} → "
                     f"{_pct(change.head_recall)}){figures}{answer}")
    for move in judged.values():
        answer = f"; answer {move.answer}" if move.answer is not None else ""
        texts.append(f"{move.case_id}: {evals_report.judged_move_text(move, '→')}{answer}")
    return texts


def _usd(value: float | None) -> str:
    return "–" if value is None else money(value)


def _arrow(base: str, head: str) -> str:
    return head if base == head or base == "–" else f"{base} → {head}"


def _pct(rate: float | None) -> str:
    return "–" if rate is None else percent(rate * 100, places=0)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def _totals(report: CheckReport) -> str:
    totals: Totals = report.summary.totals
    parts = [f"{totals.changed_files} prompt or retrieval file(s) changed", f"{totals.linted_files} file(s) linted"]
    if totals.suites:
        parts.append(f"{totals.suites} suite(s), {totals.head_cases} case(s) at head, {totals.answers} answer(s): "
                     f"{totals.new_calls} new model call(s), {totals.cached_calls} from the cache, "
                     f"{totals.shared_calls} call(s) saved by sharing requests identical at base and head, "
                     f"{totals.confirmation_calls} answer(s) to confirm flips")
        spend = report.summary.spend
        parts.append(f"new model spend (measured) {_money(spend.models)} plus {_money(spend.judges)} on judges")
    return " · ".join(parts)


def _money(total: Money) -> str:
    return money(total.usd) + (" (some unpriced)" if total.unpriced else "")


def _gates(report: CheckReport) -> list[tuple[bool, str]]:
    return [(gate.result.passed,
             f"{inline(gate.subject, 120)} · max_cost_increase_pct (estimated, no eval measured it): "
             f"{inline(gate.result.reason, 300)}" if gate.estimated else
             f"{inline(gate.subject, 120)} · {gate.name}: {inline(gate.result.reason, 400)}")
            for gate in report.summary.gates]


def _details(report: CheckReport) -> list[Detail]:
    details = []
    changed = diff_report.render_markdown(report.diff, report.base_label, report.head_label)
    details.append(Detail("What changed (semantic diff)", changed.split("\n", 1)[1].strip() or "Nothing."))
    for regressed in report.summary.regressed:
        details.append(Detail(f"Regressed cases in {inline(regressed.suite, 120)} ({len(regressed.cases)})",
                              _regressed(regressed)))
    flaky = report.summary.flaky
    if flaky:
        lines = [f"- {inline(case.suite, 120)}: {inline(case.case_id, 120)} "
                 f"({samples_text(case.change) if case.change else 'samples disagree'})" for case in flaky]
        details.append(Detail(f"Flaky cases ({len(lines)}): their samples disagree, so they count neither way",
                              "\n".join(lines)))
    if report.evals.comparisons:
        details.append(Detail("Eval suites", _suites_table(report.evals.comparisons)))
        details.append(Detail("Latency", "\n".join(f"- {inline(c.suite, 120)}: {inline(latency_text(c), 600)}"
                                                    for c in report.evals.comparisons)))
    if report.summary.lint:
        details.append(Detail(f"Lint findings ({len(report.summary.lint)})", "\n".join(
            f"- `{line.finding.code}` {inline(line.path, 200)}:{line.finding.line}:{line.finding.col} "
            f"{inline(line.finding.message, 400)}" for line in report.summary.lint)))
    notes = report.evals.skipped + report.problems
    if notes:
        details.append(Detail("Not evaluated", "\n".join(f"- {inline(note, 400)}" for note in notes)))
    return details


def _regressed(regressed: SuiteCases) -> str:
    parts = []
    for change in regressed.shown:
        base, head = change.base, change.head
        assert base is not None and head is not None  # a regressed case exists on both sides
        parts.append("\n".join([
            f"**{inline(change.case_id, 120)}** ({samples_text(change)}): {inline(_reason(head), 500)}",
            "",
            f"Input: {inline(json.dumps(head.vars, ensure_ascii=False, sort_keys=True), 600)}",
            "",
            *([f"Expected: {inline(_text(head.expected), 300)}", ""] if head.expected is not None else []),
            "Base output:",
            block(_output(base), 1_500),
            "Head output:",
            block(_output(head), 1_500),
        ]))
    hidden = len(regressed.cases) - len(regressed.shown)
    if hidden:
        parts.append(f"_…and {hidden} more regressed cases in the full report._")
    return "\n\n".join(parts)


def _reason(run: CaseRun) -> str:
    return "; ".join(run.reasons) or "score below the threshold"


def _output(run: CaseRun | None) -> str:
    output = run.shown_output if run is not None else None
    return "(no answer)" if output is None else output


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _suites_table(comparisons: list[SuiteComparison]) -> str:
    lines = ["| Suite | Cases | Pass rate | Verdict | p50 / p95 latency at head | Tokens in / out per call | "
             "Cost per call (measured) | Judge cost |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for c in comparisons:
        head, base = c.head, c.base
        low, high = head.pass_rate_interval
        rate = (_arrow(_pct(base.pass_rate) if base else "–", _pct(head.pass_rate))
                + f" (95% CI {_pct(low)}–{_pct(high)})")
        verdict = f"{c.paired.verdict}: {c.paired.evidence()}" if c.paired else "head only"
        if not head.cases:
            rate, verdict = "–", "not run" if any(name == "ran" for name, _ in c.gates) else "no case"
        tokens = f"{_num(head.input_tokens_per_call)} / {_num(head.output_tokens_per_call)}"
        cells = [inline(c.suite, 120), str(head.cases), rate, inline(verdict, 400), _latencies(head), tokens,
                 _arrow(money(base.cost_per_call_usd) if base else "–", money(head.cost_per_call_usd)),
                 money(head.judge_cost_usd)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _latencies(side: SideFigures) -> str:
    if side.latency_p50_ms is None:
        return "not measured (cached)" if side.cached_calls else "–"
    return f"{_ms(side.latency_p50_ms)} / {_ms(side.latency_p95_ms)} ({side.latency_timed} timed)"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


# -- JSON ------------------------------------------------------------------------------------

def to_json(report: CheckReport) -> dict[str, Any]:
    verdict = report.verdict
    return {
        "schema_version": versions.CHECK_REPORT,
        "base": report.base_label,
        "head": report.head_label,
        "verdict": {"level": verdict.level, "headline": headline(report), "failures": list(verdict.failures),
                    "warnings": list(verdict.warnings), "exit_code": verdict.exit_code},
        "lint": {"files": report.linted, "findings": [
            {"path": line.path, "line": line.finding.line, "column": line.finding.col, "code": line.finding.code,
             "severity": str(line.finding.severity), "message": line.finding.message} for line in report.summary.lint]},
        "prompts": [_row_json(row) for row in report.summary.rows],
        "cost": {**cost_report.to_json(report.cost), "kind": "estimated",
                 "gates": [{"prompt": gate.subject, "gate": gate.name, "kind": "estimated",
                            "passed": gate.result.passed, "reason": gate.result.reason}
                           for gate in report.summary.gates if gate.estimated]},
        "evals": {"ran": report.evals.ran, "note": report.evals.note,
                  **evals_report.to_json(report.evals.comparisons, report.base_label, report.head_label,
                                         report.evals.skipped)},
        "problems": report.problems,
        **({"retrieval": [_retrieval_json(line) for line in report.summary.retrieval]}
           if report.summary.retrieval else {}),
    }


def _retrieval_json(line: RetrievalLine) -> dict[str, Any]:
    return {"suite": line.suite, "prompt": line.prompt, "line": retrieval_text(line),
            "pass_rate": {"base": line.pass_rate[0], "head": line.pass_rate[1]},
            "cost_per_call_usd": {"estimated": {"base": line.cost_per_call[0], "head": line.cost_per_call[1]}},
            "retrieval_cost_per_call_usd": {"estimated": {"base": line.retrieval_cost_per_call[0],
                                                          "head": line.retrieval_cost_per_call[1]}},
            "monthly_cost_usd": {"estimated": {"base": line.monthly_cost[0], "head": line.monthly_cost[1]}}}


def _row_json(row: PromptRow) -> dict[str, Any]:
    """A summary row with every cost labelled: estimated from the files, measured on eval answers."""
    change = row.estimate
    return {
        "prompt": row.prompt, "status": row.status, "suites": [s.suite for s in row.suites],
        "pass_rate": {"base": row.pass_rate[0], "head": row.pass_rate[1]},
        "cases": {"regressed": row.regressed, "fixed": row.fixed, "flaky": row.flaky, "confirmed": row.confirmed},
        "verdict": row.verdict or None,
        "latency_p95_ms": {"base": row.p95[0], "head": row.p95[1], "changed_beyond_noise": row.latency_changed,
                           "measured": "fresh calls of this run only"},
        "cost_per_call_usd": {
            "estimated": {"base": change.base.cost_per_call if change and change.base else None,
                          "head": change.head.cost_per_call if change and change.head else None},
            "measured": {"base": row.measured[0], "head": row.measured[1]},
            "gap": row.cost_gap,
        },
        "retrieval_cost_per_call_usd": {  # the query's embedding and rerank: estimated only, no eval measures it
            "estimated": {"base": change.base.retrieval_cost_per_call if change and change.base else None,
                          "head": change.head.retrieval_cost_per_call if change and change.head else None},
        },
    }


def render_json(report: CheckReport) -> str:
    return json.dumps(to_json(report), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- HTML ------------------------------------------------------------------------------------

def render_html(report: CheckReport) -> str:
    """One self-contained page (inline CSS and SVG, no script, nothing fetched)."""
    from promptops.report import charts

    summary = report.summary
    comparisons = report.evals.comparisons
    return render_template(
        "check.html.j2", autoescape=True, report=report, headline=headline(report),
        rows=[_html_row(r) for r in summary.rows],
        pass_chart=charts.pass_rates(comparisons, summary.pass_rate_limit),
        latency_charts=[(c.suite, charts.latency_histogram(c, summary.latency_limits[c.suite])) for c in comparisons],
        latency_notes={c.suite: latency_text(c) for c in comparisons},
        cost_chart=charts.costs(report.cost.changes),
        regressed=[_html_case(suite.suite, change) for suite in summary.regressed for change in suite.cases],
        flaky=[_html_case(case.suite, case.change) for case in summary.flaky if case.change is not None],
        gates=summary.gates, gaps=[(r.prompt, r.cost_gap) for r in summary.rows if r.cost_gap],
        assumptions=summary.assumptions, lint=summary.lint, suites=comparisons,
        diff=diff_report.render_text(report.diff, report.base_label, report.head_label),
        retrieval=[(retrieval_text(line), source_changes(line)) for line in summary.retrieval],
        recall_chart=charts.recall(summary.retrieval) if summary.retrieval else None,
        judged_chart=charts.judged(summary.retrieval),
    )


def _html_row(row: PromptRow) -> list[str]:
    return [row.prompt + _status(row), *_figures(row)]  # the template escapes the id


def _html_case(suite: str, change: CaseChange) -> dict[str, Any]:
    head = change.head
    assert head is not None  # regressed and flaky cases ran on both sides
    return {"suite": suite, "case": change.case_id, "reason": _reason(head), "vars": head.vars,
            "samples": samples_text(change), "expected": _text(head.expected), "base": _output(change.base),
            "head": _output(head)}
