"""Renderers for eval comparisons: versioned JSON, JUnit XML for CI test tabs, and a terminal summary."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any
from xml.etree import ElementTree

from promptops.evals.compare import CaseChange, SideFigures, SuiteComparison
from promptops.evals.suite import Attempt, CaseRun

JSON_SCHEMA_VERSION = 1


def to_json(comparisons: list[SuiteComparison], base_label: str | None, head_label: str,
            skipped: list[str]) -> dict[str, Any]:
    """The document schemas/eval-results.schema.json describes."""
    return {
        "schema_version": JSON_SCHEMA_VERSION,
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
        "p_value": paired.p_value if paired else None,
        "counts": {status: sum(x.status == status for x in c.cases)
                   for status in ("fixed", "regressed", "unchanged", "new", "removed")},
        "gates": [{"gate": name, "passed": g.passed, "reason": g.reason} for name, g in c.gates],
        "passed": c.passed,
        "cases": [_case(x) for x in c.cases],
    }


def _figures(side: SideFigures | None) -> dict[str, Any] | None:
    if side is None:
        return None
    figures = asdict(side)
    figures["pass_rate_interval"] = [round(v, 6) for v in side.pass_rate_interval]
    return {k: (round(v, 9) if isinstance(v, float) else v) for k, v in figures.items()}


def _case(change: CaseChange) -> dict[str, Any]:
    return {"id": change.case_id, "status": change.status, "base": _case_run(change.base),
            "head": _case_run(change.head)}


def _case_run(run: CaseRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"passes": run.passes, "attempts": [_attempt(a) for a in run.attempts]}


def _attempt(a: Attempt) -> dict[str, Any]:
    return {"passed": a.passed, "score": round(a.score, 6), "output": a.output, "latency_ms": a.latency_ms,
            "input_tokens": a.input_tokens, "output_tokens": a.output_tokens, "cost_usd": a.cost_usd,
            "failures": list(a.failures), "cached": a.cached}


def render_junit(comparisons: list[SuiteComparison]) -> str:
    """One testsuite per eval suite, one testcase per case at head (a failure carries its reasons)."""
    root = ElementTree.Element("testsuites", name="promptops eval")
    for c in comparisons:
        head_cases = [x for x in c.cases if x.head is not None]
        failures = sum(not all(x.head.passes) for x in head_cases)  # type: ignore[union-attr]
        suite = ElementTree.SubElement(root, "testsuite", name=c.suite, tests=str(len(head_cases)),
                                       failures=str(failures))
        for x in head_cases:
            assert x.head is not None
            case = ElementTree.SubElement(suite, "testcase", classname=c.prompt_id, name=x.case_id)
            failed = [a for a in x.head.attempts if not a.passed]
            if failed:
                reasons = "; ".join(dict.fromkeys(r for a in failed for r in a.failures)) or "score below threshold"
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
        verdict = f", {c.paired.verdict} (p={c.paired.p_value:.3g})" if c.paired else ""
        lines.append(f"{'PASS' if c.passed else 'FAIL'} {c.suite} [{c.prompt_id}]: pass rate {rate}{verdict}")
        counts = {s: sum(x.status == s for x in c.cases) for s in ("fixed", "regressed", "new", "removed")}
        lines.append("  " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) if any(counts.values()) else "  no case changed")
        for x in c.cases:
            if x.status == "regressed" and x.head is not None:
                reasons = "; ".join(dict.fromkeys(r for a in x.head.attempts for r in a.failures))
                lines.append(f"  regressed {x.case_id}: {reasons}")
        if c.head.flaky:
            lines.append(f"  flaky at head (mixed outcomes across repeats): {', '.join(c.head.flaky)}")
        for name, gate in c.gates:
            lines.append(f"  gate {name}: {'ok' if gate.passed else 'FAILED'} - {gate.reason}")
    lines.extend(f"skipped: {reason}" for reason in skipped)
    return "\n".join(lines) + "\n"


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"
