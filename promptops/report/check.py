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
from promptops.ci import CheckReport, head_pass_rate, summary_rows
from promptops.evals.compare import CaseChange, SuiteComparison
from promptops.evals.suite import CaseRun
from promptops.lint.output import repository_path
from promptops.report import cost as cost_report, diff as diff_report, evals as evals_report
from promptops.report.formatting import money, signed
from promptops.report.safety import block, inline

JSON_SCHEMA_VERSION = 1
COMMENT_LIMIT = 65_536  # GitHub's maximum for a comment body
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
    while True:
        text = _render_template("check.md.j2", report=report, headline=headline(report), icon=ICONS,
                                rows=[_row(r) for r in summary_rows(report)], details=details,
                                cost_headline=cost_report.headline(report.cost), totals=_totals(report),
                                gates=_gates(report), footer=footer, assumptions=_assumptions(report))
        cuttable = [d for d in details if not d.body.startswith("_Trimmed")]
        if len(text) <= limit or not cuttable:
            return text if len(text) <= limit else text[: limit - 200] + "\n\n_(report cut at GitHub's size limit)_\n"
        biggest = max(cuttable, key=lambda d: len(d.body))
        biggest.body = f"_Trimmed to keep this comment under GitHub's size limit ({len(biggest.body):,} characters).{where}_"


def _row(row: dict[str, Any]) -> list[str]:
    return [inline(row["prompt"], 80) + _status(row), *_figures(row)]


def _status(row: dict[str, Any]) -> str:
    return "" if row["status"] in ("modified", "unchanged") else f" ({row['status']})"


def _figures(row: dict[str, Any]) -> list[str]:
    """The summary table's cells after the prompt: the same in Markdown and HTML."""
    base_rate, head_rate = row["pass_rate"]
    base_p95, head_p95 = row["p95"]
    change = row["cost"]
    return [
        _arrow(_pct(base_rate), _pct(head_rate)) if row["suites"] else "not evaluated",
        (f"{row['regressed']}" + _noise(row["suites"])) if row["suites"] else "–",
        _arrow(_ms(base_p95), _ms(head_p95)) if row["suites"] else "–",
        _arrow(money(change.base.cost_per_call) if change and change.base else "–",
               money(change.head.cost_per_call) if change and change.head else "–"),
        _monthly(change),
    ]


def _noise(suites: list[SuiteComparison]) -> str:
    verdicts = {s.paired.verdict for s in suites if s.paired is not None}
    return " (within noise)" if verdicts == {"within noise"} and any(
        x.status == "regressed" for s in suites for x in s.cases) else ""


def _monthly(change: Any) -> str:
    if change is None:
        return "–"
    d = change.delta("monthly_cost")
    if d.absolute is None:
        return "unknown" if (change.head or change.base) and (change.head or change.base).calls_per_day else "no usage set"
    pct = f" ({d.percent:+.1f}%)" if d.percent is not None else ""
    return f"{signed(d.absolute, 'usd')}{pct}"


def _arrow(base: str, head: str) -> str:
    return head if base == head or base == "–" else f"{base} → {head}"


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.0%}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def _totals(report: CheckReport) -> str:
    changed = sum(item.status != "unchanged" for item in (*report.diff.prompts, *report.diff.retrievals))
    parts = [f"{changed} prompt or retrieval file(s) changed", f"{len(report.linted)} file(s) linted"]
    comparisons = report.evals.comparisons
    if comparisons:
        sides = [side for c in comparisons for side in (c.base, c.head) if side is not None]
        calls, cached = sum(s.calls for s in sides), sum(s.cached_calls for s in sides)
        spend = [s.cost_per_call_usd * (s.calls - s.cached_calls) for s in sides if s.cost_per_call_usd is not None]
        judges = [s.judge_cost_usd for s in sides if s.judge_cost_usd is not None]
        parts.append(f"{len(comparisons)} suite(s), {sum(c.head.cases for c in comparisons)} case(s) at head, "
                     f"{calls} model call(s) of which {cached} from the cache")
        parts.append(f"new model spend about {money(sum(spend))} plus {money(sum(judges))} on judges")
    return " · ".join(parts)


def _gates(report: CheckReport) -> list[tuple[bool, str]]:
    return [(result.passed, f"{inline(c.suite, 120)} · {name}: {inline(result.reason, 300)}")
            for c in report.evals.comparisons for name, result in c.gates]


def _assumptions(report: CheckReport) -> list[str]:
    notes = [f"{inline(c.prompt_id, 80)} output tokens: {inline(c.head.output_basis, 200)}"
             for c in report.cost.changes if c.head is not None and c.status != "unchanged"]
    notes += [inline(note, 400) for note in report.cost.assumptions]
    if report.evals.ran:
        notes.append("Eval figures are measured: every call is cached, so a cached answer keeps the latency "
                     "it had when first made; judge calls are priced apart.")
    return notes


def _details(report: CheckReport) -> list[Detail]:
    details = []
    changed = diff_report.render_markdown(report.diff, report.base_label, report.head_label)
    details.append(Detail("What changed (semantic diff)", changed.split("\n", 1)[1].strip() or "Nothing."))
    for comparison in report.evals.comparisons:
        regressed = [x for x in comparison.cases if x.status == "regressed"]
        if regressed:
            details.append(Detail(f"Regressed cases in {inline(comparison.suite, 120)} ({len(regressed)})",
                                  _regressed(regressed)))
    flaky = [(c.suite, case) for c in report.evals.comparisons for case in c.head.flaky]
    if flaky:
        details.append(Detail(f"Flaky cases ({len(flaky)})", "\n".join(
            f"- {inline(suite, 120)}: {inline(case, 120)} (mixed outcomes across repeats)" for suite, case in flaky)))
    if report.evals.comparisons:
        details.append(Detail("Eval suites", _suites_table(report.evals.comparisons)))
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
            f"**{inline(change.case_id, 120)}**: {inline(_reason(head), 500)}",
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
    lines = ["| Suite | Cases | Pass rate | Verdict | p50 / p95 latency | Tokens in / out per call | Cost per call | Judge cost |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for c in comparisons:
        head, base = c.head, c.base
        low, high = head.pass_rate_interval
        rate = _arrow(_pct(base.pass_rate) if base else "–", _pct(head.pass_rate)) + f" (95% CI {low:.0%}–{high:.0%})"
        verdict = f"{c.paired.verdict}, p={c.paired.p_value:.2g}" if c.paired else "head only"
        latency = f"{_ms(head.latency_p50_ms)} / {_ms(head.latency_p95_ms)}"
        tokens = f"{_num(head.input_tokens_per_call)} / {_num(head.output_tokens_per_call)}"
        cells = [inline(c.suite, 120), str(head.cases), rate, verdict, latency, tokens,
                 _arrow(money(base.cost_per_call_usd) if base else "–", money(head.cost_per_call_usd)),
                 money(head.judge_cost_usd)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
        "cost": cost_report.to_json(report.cost),
        "evals": {"ran": report.evals.ran, "note": report.evals.note,
                  **evals_report.to_json(report.evals.comparisons, report.base_label, report.head_label,
                                         report.evals.skipped)},
        "problems": report.problems,
    }


def render_json(report: CheckReport) -> str:
    return json.dumps(to_json(report), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- HTML ------------------------------------------------------------------------------------

def render_html(report: CheckReport) -> str:
    """One self-contained page (inline CSS and SVG, no script, nothing fetched)."""
    from promptops.report import charts

    rows = summary_rows(report)
    return _render_template(
        "check.html.j2", autoescape=True, report=report, headline=headline(report), rows=[_html_row(r) for r in rows],
        pass_chart=charts.pass_rates(report.evals.comparisons),
        latency_charts=[(c.suite, charts.latency_histogram(c)) for c in report.evals.comparisons],
        cost_chart=charts.costs(report.cost.changes), regressed=_html_regressed(report.evals.comparisons),
        lint=[(repository_path(f.path), f) for f in report.lint.findings], suites=report.evals.comparisons,
        diff=diff_report.render_text(report.diff, report.base_label, report.head_label),
    )


def _html_row(row: dict[str, Any]) -> list[str]:
    return [row["prompt"] + _status(row), *_figures(row)]  # the template escapes the id


def _html_regressed(comparisons: list[SuiteComparison]) -> list[dict[str, Any]]:
    return [{"suite": c.suite, "case": x.case_id, "reason": _reason(x.head), "vars": x.head.vars,
             "expected": _text(x.head.expected), "base": _output(x.base), "head": _output(x.head)}
            for c in comparisons for x in c.cases
            if x.status == "regressed" and x.base is not None and x.head is not None]


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
