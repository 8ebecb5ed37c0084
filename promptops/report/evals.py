"""Renderers for eval comparisons: versioned JSON, JUnit XML for CI test tabs, and a terminal summary."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any
from xml.etree import ElementTree

from promptops.model.evals import (
    Attempt,
    CaseChange,
    CaseRun,
    CaseStatus,
    JudgedChange,
    JudgedMove,
    LatencyChange,
    RetrievalComparison,
    RetrievalFigures,
    SideFigures,
    SuiteComparison,
)
from promptops.report import versions
from promptops.report.formatting import money, percent


def to_json(comparisons: list[SuiteComparison], base_label: str | None, head_label: str,
            skipped: list[str]) -> dict[str, Any]:
    """The document schemas/eval-results.schema.json describes."""
    return {
        "schema_version": versions.EVAL_RESULTS,
        "base": base_label,
        "head": head_label,
        "passed": all(c.passed for c in comparisons),
        "skipped": skipped,
        "suites": [_suite(c) for c in comparisons],
    }


def render_json(comparisons: list[SuiteComparison], base_label: str | None, head_label: str,
                skipped: list[str]) -> str:
    return json.dumps(to_json(comparisons, base_label, head_label, skipped), indent=2, sort_keys=True) + "\n"


def _suite(c: SuiteComparison) -> dict[str, Any]:
    paired = c.paired
    return {
        "suite": c.suite,
        "prompt": c.prompt_id,
        "base": _figures(c.base),
        "head": _figures(c.head),
        "verdict": paired.verdict if paired else None,
        "p_value": _rounded(paired.p_value) if paired else None,
        "counts": {str(status): count for status, count in c.counts().items()},
        "paired": _paired(c) if paired else None,
        "latency": _latency(c.latency),
        "gates": [{"gate": name, "passed": g.passed, "reason": g.reason, "preexisting": g.preexisting}
                  for name, g in c.gates],
        "passed": c.passed,
        "cases": [_case(x) for x in c.cases],
        **({"retrieval": _retrieval(c.retrieval)} if c.retrieval is not None else {}),
    }


def _retrieval(r: RetrievalComparison) -> dict[str, Any]:
    return {"base": _rounded_fields(r.base), "head": _rounded_fields(r.head), "verdict": r.verdict, "paired": r.paired,
            "lost": r.lost, "gained": r.gained, "recall_drop": _rounded(r.drop), "reindex": r.reindex,
            "reindex_cost_usd": _rounded(r.reindex_cost_usd), "reindex_tokens": r.reindex_tokens,
            "context_precision": _judged_json(r.context_precision), "context_recall": _judged_json(r.context_recall),
            "judged_moves": [{"id": m.case_id, "precision": _sides_json(m.precision), "recall": _sides_json(m.recall),
                              "answer": str(m.answer) if m.answer is not None else None} for m in r.judged_moves],
            "changes": [{"id": c.case_id, "lost": list(c.lost), "gained": list(c.gained),
                         "base_recall": _rounded(c.base_recall), "head_recall": _rounded(c.head_recall),
                         "answer": str(c.answer) if c.answer is not None else None} for c in r.changes]}


def _sides_json(sides: tuple[float | None, float | None]) -> dict[str, float | None]:
    return {"base": _rounded(sides[0]), "head": _rounded(sides[1])}


def _judged_json(change: JudgedChange | None) -> dict[str, Any] | None:
    if change is None:
        return None
    return {"paired": change.paired, "base": _rounded(change.base), "head": _rounded(change.head),
            "drop": _rounded(change.drop), "moved": change.moved, "p_value": _rounded(change.p_value),
            "verdict": change.verdict}


def _rounded_fields(figures: RetrievalFigures | None) -> dict[str, Any] | None:
    if figures is None:
        return None
    return {k: (round(v, 9) if isinstance(v, float) else v) for k, v in asdict(figures).items()}


def _paired(c: SuiteComparison) -> dict[str, Any]:
    paired = c.paired
    assert paired is not None
    return {"repeat": c.repeat, "confirm": c.confirm, "confirmed": paired.confirmed,
            "candidates_regressed": paired.candidates_regressed, "candidates_fixed": paired.candidates_fixed,
            "p_flips_regressed": _rounded(paired.p_flips_regressed), "p_flips_fixed": _rounded(paired.p_flips_fixed),
            "drop": _rounded(paired.drop), "p_drop": _rounded(paired.p_drop), "p_rise": _rounded(paired.p_rise),
            "by_flips": paired.by_flips, "by_samples": paired.by_samples, "evidence": paired.evidence()}


def _latency(change: LatencyChange | None) -> dict[str, Any] | None:
    if change is None:
        return None
    return {"base_timed": change.base_count, "head_timed": change.head_count, "shift_ms": _rounded(change.shift_ms),
            "shift_interval_ms": [_rounded(change.shift_low_ms), _rounded(change.shift_high_ms)],
            "p_value": _rounded(change.p_value), "changed": change.changed}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 9)


def _figures(side: SideFigures | None) -> dict[str, Any] | None:
    if side is None:
        return None
    figures = asdict(side)
    del figures["retrieval"]  # the suite's "retrieval" holds it, beside the comparison
    figures["pass_rate_interval"] = [round(v, 6) for v in side.pass_rate_interval]
    for key in ("latency_p50_interval_ms", "latency_p95_interval_ms"):
        figures[key] = list(figures[key])
    return {k: (round(v, 9) if isinstance(v, float) else v) for k, v in figures.items()}


def _case(change: CaseChange) -> dict[str, Any]:
    return {"id": change.case_id, "status": str(change.status), "confirmed": change.confirmed,
            "base": _case_run(change.base), "head": _case_run(change.head)}


def _case_run(run: CaseRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"passes": run.passes, "initial": run.initial or len(run.attempts),
            "attempts": [_attempt(a) for a in run.attempts]}


def _attempt(a: Attempt) -> dict[str, Any]:
    return {"passed": a.passed, "score": round(a.score, 6), "output": a.output, "latency_ms": a.latency_ms,
            "input_tokens": a.input_tokens, "output_tokens": a.output_tokens, "cost_usd": a.cost_usd,
            "failures": list(a.failures), "cached": a.cached, "shared": a.shared,
            "failure": a.failure.value if a.failure else None}


def render_junit(comparisons: list[SuiteComparison]) -> str:
    """One testsuite per eval suite, one testcase per case at head (a failure carries its reasons)."""
    root = ElementTree.Element("testsuites", name="promptops eval")
    for c in comparisons:
        head_cases = [x for x in c.cases if x.head is not None]
        failures = sum(not all(x.head.passes) for x in head_cases if x.head is not None)
        suite = ElementTree.SubElement(root, "testsuite", name=c.suite, tests=str(len(head_cases)),
                                       failures=str(failures))
        for x in head_cases:
            assert x.head is not None
            case = ElementTree.SubElement(suite, "testcase", classname=c.prompt_id, name=x.case_id)
            failed = [a for a in x.head.attempts if not a.passed]
            if failed:
                reasons = "; ".join(x.head.reasons) or "score below threshold"
                message = f"{len(failed)} of {len(x.head.attempts)} attempts failed ({x.status})"
                ElementTree.SubElement(case, "failure", message=message).text = reasons
        for name, gate in c.gates:
            case = ElementTree.SubElement(suite, "testcase", classname=f"{c.prompt_id}.gates", name=name)
            if not gate.passed:
                ElementTree.SubElement(case, "failure", message=gate.reason)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def render_text(comparisons: list[SuiteComparison], skipped: list[str]) -> str:
    lines = []
    for c in comparisons:
        head, base = c.head, c.base
        rate = f"{_pct(base.pass_rate)} -> {_pct(head.pass_rate)}" if base else _pct(head.pass_rate)
        verdict = f", {c.paired.verdict}" if c.paired else ""
        lines.append(f"{'PASS' if c.passed else 'FAIL'} {c.suite} [{c.prompt_id}]: pass rate {rate}{verdict}")
        if c.paired is not None:
            lines.append(f"  {c.paired.evidence()}")
        if c.retrieval is not None:
            lines.extend(f"  {text}" for text in retrieval_texts(c.retrieval))
        for x in c.cases:
            if x.status in (CaseStatus.REGRESSED, CaseStatus.FIXED, CaseStatus.FLAKY):
                reasons = "; ".join(x.head.reasons if x.head else ())
                lines.append(f"  {x.status} {x.case_id} ({samples_text(x)})" + (f": {reasons}" if reasons else ""))
            elif x.status is CaseStatus.UNANSWERED:
                errors = "; ".join(dict.fromkeys(r for run in (x.base, x.head) if run is not None and not run.passes
                                                 for a in run.attempts for r in a.failures))
                lines.append(f"  unanswered {x.case_id}: {errors}")
            elif x.status in (CaseStatus.NEW, CaseStatus.REMOVED):
                lines.append(f"  {x.status} {x.case_id}")
        if c.paired is None and c.head.flaky:
            lines.append(f"  flaky (samples disagree): {', '.join(c.head.flaky)}")
        lines.append(f"  latency: {latency_text(c)}")
        for name, gate in c.gates:
            lines.append(f"  gate {name}: {'ok' if gate.passed else 'FAILED'} - {gate.reason}")
    lines.extend(f"skipped: {reason}" for reason in skipped)
    return "\n".join(lines) + "\n"


def source_verdict(r: RetrievalComparison) -> str:
    """"1 case(s) lost every expected source, 0 gained", and how many more lost only some of theirs (a case
    with two expected sources that keeps one still hits, so it is not counted as lost)."""
    partly = sum(bool(change.lost) and change.head_recall > 0 for change in r.changes)
    more = f"; {partly} more lost some of theirs" if partly else ""
    return f"{r.lost} case(s) lost every expected source, {r.gained} gained{more}"


def retrieval_texts(r: RetrievalComparison) -> list[str]:
    """A suite's retrieval for a terminal: recall@k, hit@k and MRR (base -> head), the cases whose sources
    moved, and the re-index a change of embedding model or chunking needs."""
    head, base = r.head, r.base
    if not head.scored:
        lines = [f"retrieval {head.config}: {head.k} passage(s) a case; no case names expected_sources"]
    else:
        compared = base if base is not None and base.scored else None
        figures = ", ".join([_at_k("recall", "recall", compared, head), _at_k("hit", "hit_rate", compared, head),
                             "MRR " + _change(f"{compared.mrr:.2f}" if compared else None, f"{head.mrr:.2f}")])
        verdict = f"; {r.verdict}: {source_verdict(r)}" if compared is not None else ""
        lines = [f"retrieval {head.config}: {figures} over {head.scored} case(s) with expected sources{verdict}"]
    judged = judged_text(r, "->")
    if judged:
        lines.append(judged)
    for change in r.changes:
        moved = "; ".join([f"lost {', '.join(change.lost)}"] * bool(change.lost)
                          + [f"gained {', '.join(change.gained)}"] * bool(change.gained))
        answer = f"; answer {change.answer}" if change.answer is not None else ""
        lines.append(f"  sources moved {change.case_id}: {moved} (recall {_pct(change.base_recall)} -> "
                     f"{_pct(change.head_recall)}){answer}")
    for move in r.judged_moves:
        answer = f"; answer {move.answer}" if move.answer is not None else ""
        lines.append(f"  judged moved {move.case_id}: {judged_move_text(move, '->')}{answer}")
    if r.reindex:
        cost = f"est. {money(r.reindex_cost_usd)}" if r.reindex_cost_usd is not None else "cost unknown (no price)"
        lines.append(f"re-index: {r.reindex}; one-off {cost} for {r.reindex_tokens:,} corpus tokens")
    return lines


def judged_text(r: RetrievalComparison, arrow: str) -> str | None:
    """The judged figures (retrieval.judge), base ``arrow`` head with the verdict, and what judging cost;
    None when the head judged none."""
    head, base = r.head, r.base
    parts = []
    for name, figure, count, change in (
            ("context precision", head.context_precision, head.precision_judged, r.context_precision),
            ("context recall", head.context_recall, head.recall_judged, r.context_recall)):
        if figure is None:
            continue
        if change is None:
            parts.append(f"{name} {figure:.2f} over {count} case(s)")
        else:
            parts.append(f"{name} {change.base:.2f} {arrow} {change.head:.2f} over {change.paired} case(s) judged "
                         f"on both sides, {change.verdict}" + (f" (p = {change.p_value:.2g})" if change.moved else ""))
    if not parts:
        return None
    calls = head.judge_calls + (base.judge_calls if base is not None else 0)
    costs = [head.judge_cost_usd] + ([base.judge_cost_usd] if base is not None else [])
    cost = money(None if None in costs else sum(c for c in costs if c is not None))
    return (f"judged by {head.judge_model}: {'; '.join(parts)}; {calls} judge call(s) in this run, {cost} "
            "(measured, apart from the answers)")


def judged_move_text(move: JudgedMove, arrow: str) -> str:
    """"context precision 0.47 -> 1.00, context recall 1.00 -> 0.00": the judged figures that moved."""
    return ", ".join(f"{name} {base:.2f} {arrow} {head:.2f}" for name, (base, head) in
                     (("context precision", move.precision), ("context recall", move.recall))
                     if base is not None and head is not None and f"{base:.2f}" != f"{head:.2f}")


def _at_k(name: str, field: str, base: RetrievalFigures | None, head: RetrievalFigures) -> str:
    """"recall@3 100.0% -> 66.7%", or with k changed "recall@3 100.0% -> recall@1 33.3%"."""
    head_value = _pct(getattr(head, field))
    if base is None:
        return f"{name}@{head.k} {head_value}"
    if base.k != head.k:
        return f"{name}@{base.k} {_pct(getattr(base, field))} -> {name}@{head.k} {head_value}"
    return f"{name}@{head.k} " + _change(_pct(getattr(base, field)), head_value)


def _change(base: str | None, head: str) -> str:
    return head if base is None else f"{base} -> {head}"


def samples_text(change: CaseChange) -> str:
    """A case's samples on each side, for a reader: "base 3 of 3 pass, head 0 of 3"."""
    parts = []
    for side, run in (("base", change.base), ("head", change.head)):
        if run is not None and run.passes:
            parts.append(f"{side} {sum(run.passes)} of {len(run.passes)} pass")
    return ", ".join(parts)


def latency_text(c: SuiteComparison) -> str:
    """p50 and p95 with their intervals, at base and head, and whether they differ beyond noise."""
    sides = [(name, side) for name, side in (("base", c.base), ("head", c.head)) if side is not None]
    figures = "; ".join(f"{name} {_quantiles(side)}" for name, side in sides)
    change = c.latency
    if change is None or change.p_value is None:
        return figures
    shift = (f"head {change.shift_ms:+,.0f} ms (95% CI {change.shift_low_ms:+,.0f} to {change.shift_high_ms:+,.0f}), "
             f"p = {change.p_value:.2g}")
    return f"{figures}; {'a change beyond noise' if change.changed else 'no change beyond noise'}: {shift}"


def _quantiles(side: SideFigures) -> str:
    if side.latency_p50_ms is None:
        return f"not measured ({side.cached_calls} of {side.calls} answers from the cache)" if side.cached_calls \
            else "not measured"
    return (f"p50 {_ms_interval(side.latency_p50_ms, side.latency_p50_interval_ms)}, "
            f"p95 {_ms_interval(side.latency_p95_ms, side.latency_p95_interval_ms)} "
            f"over {side.latency_timed} timed call(s)")


def _ms_interval(value: float | None, interval: tuple[float | None, float | None]) -> str:
    if value is None:
        return "–"
    low, high = interval
    if low is None and high is None:
        return f"{value:,.0f} ms (too few calls for a 95% interval)"
    bounds = f"{'?' if low is None else f'{low:,.0f}'}–{'?' if high is None else f'{high:,.0f}'}"
    return f"{value:,.0f} ms ({bounds})"


def _pct(rate: float) -> str:
    return percent(rate * 100)
