"""Renderers for a CheckReport: the PR comment and step summary (Markdown), a standalone HTML page
with small charts, and JSON.

Everything that comes from a pull request (ids, case inputs, model output) is
untrusted: it reaches Markdown only through ``safety.inline`` or
``safety.block`` and HTML only through Jinja's autoescape.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from promptops import resources
from promptops.ci import CheckReport, PromptRow, head_pass_rate, prompt_rows
from promptops.evals.compare import CaseChange, SideFigures, SuiteComparison
from promptops.evals.stats import CaseStatus
from promptops.evals.suite import CaseRun
from promptops.github import COMMENT_LIMIT
from promptops.report import cost as cost_report, diff as diff_report, evals as evals_report
from promptops.report.evals import latency_text, samples_text
from promptops.report.formatting import money, signed
from promptops.report.lint import repository_path
from promptops.report.safety import block, inline

JSON_SCHEMA_VERSION = 2
SUMMARY_LIMIT = 250_000  # a step summary may hold 1 MiB: characters of up to 4 bytes each
MAX_REGRESSED_SHOWN = 20  # per suite; the rest are counted
ICONS = {"pass": "✅", "warn": "⚠️", "fail": "❌"}
FOOTER = "This comment is updated on every push."


@dataclass
class Detail:
    summary: str
    body: str


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
    changed = sum(item.status != "unchanged" for item in report.diff.prompts)
    rate = head_pass_rate(report)
    quality = f"evals pass ({rate:.0%} of cases at head)" if rate is not None else "no eval suite was affected"
    return f"{changed} prompt(s) changed, {quality}; {cost_report.headline(report.cost)}"


# -- Markdown --------------------------------------------------------------------------------

def render_markdown(report: CheckReport, *, limit: int = COMMENT_LIMIT, full_report: str = "",
                    footer: str = FOOTER) -> str:
    """The PR comment (or step summary), under ``limit`` characters: over it, the largest
    details give way to a note saying where the full report is."""
    details = _details(report)
    where = f" The full report: {full_report}." if full_report else ""
    rows = prompt_rows(report)
    while True:
        text = _render_template("check.md.j2", report=report, headline=headline(report), icon=ICONS,
                                rows=[_row(r) for r in rows], details=details,
                                cost_headline=cost_report.headline(report.cost), totals=_totals(report),
                                gaps=[(inline(r.prompt, 80), inline(r.cost_gap, 600)) for r in rows if r.cost_gap],
                                gates=_gates(report), footer=footer,
                                assumptions=[inline(note, 400) for note in _assumptions(report)])
        cuttable = [d for d in details if not d.body.startswith("_Trimmed")]
        if len(text) <= limit or not cuttable:
            return text if len(text) <= limit else text[: limit - 200] + "\n\n_(report cut at GitHub's size limit)_\n"
        biggest = max(cuttable, key=lambda d: len(d.body))
        biggest.body = f"_Trimmed to keep this comment under GitHub's size limit ({len(biggest.body):,} characters).{where}_"


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
                                      money(change.head.cost_per_call) if change.head else "–"))
    base, head = row.measured
    if head is not None or base is not None:
        parts.append("measured " + _arrow(money(base) if base is not None else "–", money(head)))
    return " · ".join(parts) or "–"


def _monthly(change: Any) -> str:
    if change is None:
        return "–"
    d = change.delta("monthly_cost")
    if d.absolute is None:
        side = change.head or change.base
        return "unknown" if side and side.calls_per_day else "no usage set"
    pct = f" ({d.percent:+.1f}%)" if d.percent is not None else ""
    return f"est. {signed(d.absolute, 'usd')}{pct}"


def _arrow(base: str, head: str) -> str:
    return head if base == head or base == "–" else f"{base} → {head}"


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.0%}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def _totals(report: CheckReport) -> str:
    changed = sum(item.status != "unchanged" for item in (*report.diff.prompts, *report.diff.retrievals))
    parts = [f"{changed} prompt or retrieval file(s) changed", f"{report.lint.files} file(s) linted"]
    comparisons = report.evals.comparisons
    if comparisons:
        sides = [side for c in comparisons for side in (c.base, c.head) if side is not None]
        calls, cached = sum(s.calls for s in sides), sum(s.cached_calls for s in sides)
        shared, new = sum(s.shared_calls for s in sides), sum(s.new_calls for s in sides)
        confirming = sum(s.confirmation_calls for s in sides)
        parts.append(f"{len(comparisons)} suite(s), {sum(c.head.cases for c in comparisons)} case(s) at head, "
                     f"{calls} answer(s): {new} new model call(s), {cached} from the cache, {shared} call(s) "
                     f"saved by sharing requests identical at base and head, {confirming} answer(s) to confirm flips")
        spend = [s.new_spend_usd for s in sides]
        judges = [s.judge_cost_usd for s in sides]
        parts.append(f"new model spend (measured) {_total_money(spend)} plus {_total_money(judges)} on judges")
    return " · ".join(parts)


def _total_money(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    unknown = " (some unpriced)" if len(known) < len(values) else ""
    return money(sum(known)) + unknown


def _gates(report: CheckReport) -> list[tuple[bool, str]]:
    gates = [(result.passed, f"{inline(c.suite, 120)} · {name}: {inline(result.reason, 400)}")
             for c in report.evals.comparisons for name, result in c.gates]
    gates += [(result.passed, f"{inline(prompt, 120)} · max_cost_increase_pct (estimated, no eval measured it): "
                              f"{inline(result.reason, 300)}") for prompt, result in report.cost_gates]
    return gates


def _assumptions(report: CheckReport) -> list[str]:
    """Plain text: each renderer escapes it its own way."""
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


def _details(report: CheckReport) -> list[Detail]:
    details = []
    changed = diff_report.render_markdown(report.diff, report.base_label, report.head_label)
    details.append(Detail("What changed (semantic diff)", changed.split("\n", 1)[1].strip() or "Nothing."))
    for comparison in report.evals.comparisons:
        regressed = comparison.with_status(CaseStatus.REGRESSED)
        if regressed:
            details.append(Detail(f"Regressed cases in {inline(comparison.suite, 120)} ({len(regressed)})",
                                  _regressed(regressed)))
    flaky = [(c, change) for c in report.evals.comparisons for change in c.with_status(CaseStatus.FLAKY)]
    flaky_heads = [(c.suite, case) for c in report.evals.comparisons if c.paired is None for case in c.head.flaky]
    if flaky or flaky_heads:
        lines = [f"- {inline(c.suite, 120)}: {inline(change.case_id, 120)} ({samples_text(change)})"
                 for c, change in flaky] + [f"- {inline(suite, 120)}: {inline(case, 120)} (samples disagree)"
                                            for suite, case in flaky_heads]
        details.append(Detail(f"Flaky cases ({len(lines)}): their samples disagree, so they count neither way",
                              "\n".join(lines)))
    if report.evals.comparisons:
        details.append(Detail("Eval suites", _suites_table(report.evals.comparisons)))
        details.append(Detail("Latency", "\n".join(f"- {inline(c.suite, 120)}: {inline(latency_text(c), 600)}"
                                                    for c in report.evals.comparisons)))
    if report.lint.findings:
        details.append(Detail(f"Lint findings ({len(report.lint.findings)})", "\n".join(
            f"- `{f.code}` {inline(repository_path(f.path), 200)}:{f.line}:{f.col} {inline(f.message, 400)}"
            for f in report.lint.findings)))
    notes = report.evals.skipped + report.problems
    if notes:
        details.append(Detail("Not evaluated", "\n".join(f"- {inline(note, 400)}" for note in notes)))
    return details


def _regressed(cases: list[CaseChange]) -> str:
    parts = []
    for change in cases[:MAX_REGRESSED_SHOWN]:
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
    if len(cases) > MAX_REGRESSED_SHOWN:
        parts.append(f"_…and {len(cases) - MAX_REGRESSED_SHOWN} more regressed cases in the full report._")
    return "\n\n".join(parts)


def _reason(run: CaseRun) -> str:
    reasons = dict.fromkeys(r for a in run.attempts if not a.passed for r in a.failures)
    return "; ".join(reasons) or "score below the threshold"


def _output(run: CaseRun) -> str:
    attempt = next((a for a in run.attempts if not a.passed), run.attempts[0]) if run.attempts else None
    if attempt is None or attempt.output is None:
        return "(no answer)"
    return attempt.output


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _suites_table(comparisons: list[SuiteComparison]) -> str:
    lines = ["| Suite | Cases | Pass rate | Verdict | p50 / p95 latency at head | Tokens in / out per call | "
             "Cost per call (measured) | Judge cost |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for c in comparisons:
        head, base = c.head, c.base
        low, high = head.pass_rate_interval
        rate = _arrow(_pct(base.pass_rate) if base else "–", _pct(head.pass_rate)) + f" (95% CI {low:.0%}–{high:.0%})"
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
        "schema_version": JSON_SCHEMA_VERSION,
        "base": report.base_label,
        "head": report.head_label,
        "verdict": {"level": verdict.level, "headline": headline(report), "failures": list(verdict.failures),
                    "warnings": list(verdict.warnings), "exit_code": verdict.exit_code},
        "lint": {"files": report.linted, "findings": [
            {"path": repository_path(f.path), "line": f.line, "column": f.col, "code": f.code,
             "severity": str(f.severity), "message": f.message} for f in report.lint.findings]},
        "prompts": [_row_json(row) for row in prompt_rows(report)],
        "cost": {**cost_report.to_json(report.cost), "kind": "estimated",
                 "gates": [{"prompt": prompt, "gate": "max_cost_increase_pct", "kind": "estimated",
                            "passed": result.passed, "reason": result.reason} for prompt, result in report.cost_gates]},
        "evals": {"ran": report.evals.ran, "note": report.evals.note,
                  **evals_report.to_json(report.evals.comparisons, report.base_label, report.head_label,
                                         report.evals.skipped)},
        "problems": report.problems,
    }


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
    }


def render_json(report: CheckReport) -> str:
    return json.dumps(to_json(report), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- HTML ------------------------------------------------------------------------------------

def render_html(report: CheckReport) -> str:
    """One self-contained page (inline CSS and SVG, no script, nothing fetched)."""
    from promptops.report import charts

    rows = prompt_rows(report)
    comparisons = report.evals.comparisons
    gates = {c.suite: c.gates for c in comparisons}
    return _render_template(
        "check.html.j2", autoescape=True, report=report, headline=headline(report), rows=[_html_row(r) for r in rows],
        pass_chart=charts.pass_rates(comparisons, _gate_value(comparisons, "pass_rate")),
        latency_charts=[(c.suite, charts.latency_histogram(c, _gate_value([c], "max_p95_latency_ms")))
                        for c in comparisons],
        latency_notes={c.suite: latency_text(c) for c in comparisons},
        cost_chart=charts.costs(report.cost.changes), regressed=_html_cases(comparisons, CaseStatus.REGRESSED),
        flaky=_html_cases(comparisons, CaseStatus.FLAKY), gates=gates, cost_gates=report.cost_gates,
        gaps=[(r.prompt, r.cost_gap) for r in rows if r.cost_gap], assumptions=_assumptions(report),
        lint=[(repository_path(f.path), f) for f in report.lint.findings], suites=comparisons,
        diff=diff_report.render_text(report.diff, report.base_label, report.head_label),
    )


def _gate_value(comparisons: list[SuiteComparison], name: str) -> float | None:
    """The gate's limit where every suite shares it (a chart draws one line), else None."""
    values = {float(value) for c in comparisons for value in [c.gate_limits.get(name)] if value is not None}
    return values.pop() if len(values) == 1 else None


def _html_row(row: PromptRow) -> list[str]:
    return [row.prompt + _status(row), *_figures(row)]  # the template escapes the id


def _html_cases(comparisons: list[SuiteComparison], status: CaseStatus) -> list[dict[str, Any]]:
    return [{"suite": c.suite, "case": x.case_id, "reason": _reason(x.head), "vars": x.head.vars,
             "samples": samples_text(x), "expected": _text(x.head.expected), "base": _output(x.base),
             "head": _output(x.head)}
            for c in comparisons for x in c.with_status(status) if x.base is not None and x.head is not None]


def _render_template(name: str, *, autoescape: bool = False, **values: Any) -> str:
    return _environment(autoescape).get_template(name).render(**values)


@functools.lru_cache(maxsize=2)
def _environment(autoescape: bool) -> Any:
    """One Jinja environment per escaping mode: render_markdown may render several times to fit a limit."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    environment = Environment(loader=FileSystemLoader(str(resources.data_dir("templates"))),
                              undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True)
    environment.filters["inline"] = inline
    environment.filters["tojson_sorted"] = lambda value: json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2)
    return environment
