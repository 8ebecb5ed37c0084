"""Retrieval quality of a suite, per side and base against head: hit@k, recall@k and reciprocal rank over
the cases that name ``expected_sources``, the cases whose sources moved, the verdict and the recall gates
(``stats.retrieval_verdict``; the model is in stats' docstring, "Retrieval"); and, when the suite asks for
them (``retrieval.judge``, ``evals/context.py``), judged context precision and recall, their means per side
and their change (``stats.judged_change``, "Judged retrieval" there)."""

from __future__ import annotations

from statistics import fmean

from promptops.evals import stats
from promptops.model.evals import (
    CaseChange,
    CaseRetrieval,
    CaseStatus,
    GateResult,
    JudgedChange,
    JudgedMove,
    RetrievalComparison,
    RetrievalFigures,
    RetrievalRun,
    SourceChange,
)
from promptops.specs import Gates


def retrieval_figures(run: RetrievalRun | None) -> RetrievalFigures | None:
    if run is None:
        return None
    scored = [case for case in run.cases.values() if case.scored]
    precision = [p for case in run.cases.values() if (p := case.context_precision) is not None]
    recall = [r for case in run.cases.values() if (r := case.context_recall) is not None]
    return RetrievalFigures(
        config=run.config, k=run.k, scored=len(scored),
        hit_rate=fmean(c.hit for c in scored) if scored else 0.0,
        recall=fmean(c.recall for c in scored) if scored else 0.0,
        mrr=fmean(c.reciprocal_rank for c in scored) if scored else 0.0,
        calls=run.calls, cost_usd=run.cost_usd, query_cost_usd=run.query_cost_usd,
        context_precision=fmean(precision) if precision else None,
        context_recall=fmean(recall) if recall else None,
        precision_judged=len(precision), recall_judged=len(recall), judge_model=run.judge_model,
        judge_calls=run.judge_calls, judge_cost_usd=run.judge_cost_usd,
    )


def compare_retrieval(base: RetrievalRun | None, head: RetrievalRun | None,
                      answers: list[CaseChange]) -> RetrievalComparison | None:
    """Base against head; None when the head retrieved nothing."""
    head_figures = retrieval_figures(head)
    if head is None or head_figures is None:
        return None
    statuses = {change.case_id: change.status for change in answers}
    both = [(case_id, base.cases[case_id], case) for case_id, case in head.cases.items()
            if base is not None and case.scored and case_id in base.cases and base.cases[case_id].scored]
    drop = fmean(old.recall - new.recall for _, old, new in both) if both else 0.0
    changes = [_moved(case_id, old, new, statuses.get(case_id)) for case_id, old, new in both
               if set(old.found) != set(new.found)]
    reason = reindex_reason(base, head)
    return RetrievalComparison(
        base=retrieval_figures(base), head=head_figures, changes=changes, paired=len(both),
        lost=sum(old.hit and not new.hit for _, old, new in both),
        gained=sum(new.hit and not old.hit for _, old, new in both),
        drop=drop, verdict=stats.retrieval_verdict([(old.hit, new.hit) for _, old, new in both], drop),
        reindex=reason, reindex_cost_usd=head.reindex_cost_usd if reason else None,
        reindex_tokens=head.corpus_tokens if reason else 0,
        context_precision=_judged(base, head, "context_precision"),
        context_recall=_judged(base, head, "context_recall"),
        judged_moves=_judged_moves(base, head, statuses),
    )


def _judged_moves(base: RetrievalRun | None, head: RetrievalRun,
                  statuses: dict[str, CaseStatus]) -> tuple[JudgedMove, ...]:
    """The cases whose judged figures differ by a hundredth or more, the largest fall first."""
    if base is None:
        return ()
    moves = []
    for case_id, new in head.cases.items():
        old = base.cases.get(case_id)
        if old is None:
            continue
        move = JudgedMove(case_id, (old.context_precision, new.context_precision),
                          (old.context_recall, new.context_recall), statuses.get(case_id))
        if any(a is not None and b is not None and round(a, 2) != round(b, 2)
               for a, b in (move.precision, move.recall)):
            moves.append(move)
    return tuple(sorted(moves, key=lambda move: -move.fall))


def _judged(base: RetrievalRun | None, head: RetrievalRun, figure: str) -> JudgedChange | None:
    """A judged figure base against head, over the cases judged on both sides; None when a side judged none."""
    if base is None:
        return None
    pairs = [(old, new) for case_id, case in head.cases.items() if case_id in base.cases
             and (new := getattr(case, figure)) is not None
             and (old := getattr(base.cases[case_id], figure)) is not None]
    return stats.judged_change(pairs) if pairs else None


def _moved(case_id: str, old: CaseRetrieval, new: CaseRetrieval, answer: CaseStatus | None) -> SourceChange:
    return SourceChange(case_id, tuple(s for s in old.found if s not in new.found),
                        tuple(s for s in new.found if s not in old.found), old.recall, new.recall, answer)


def reindex_reason(base: RetrievalRun | None, head: RetrievalRun) -> str | None:
    """Why the head's index must be built anew in production: its embedding model or chunking changed.

    A changed corpus re-embeds only its changed chunks, which is no re-index; a new embedding model
    under the same ``index.name`` is said loudly: the vectors already stored there are of another model.
    """
    if base is None or base.config != head.config:
        return None
    if base.embedding_model != head.embedding_model:
        where = (f" under the same index name '{head.index_name}'"
                 if head.index_name and head.index_name == base.index_name else "")
        return (f"embedding model {base.embedding_model} -> {head.embedding_model}{where}: "
                "re-index needed, the stored vectors are of the old model")
    if base.chunking != head.chunking:
        changed = ", ".join(f"{name} {base.chunking.get(name)} -> {value}" for name, value in head.chunking.items()
                            if base.chunking.get(name) != value)
        return f"chunking changed ({changed}): re-index needed"
    return None


def recall_gates(comparison: RetrievalComparison | None, gates: Gates,
                 base_label: str) -> list[tuple[str, GateResult]]:
    if comparison is None:
        return []
    return _recall_at_k_gates(comparison, gates, base_label) + _judged_gates(comparison, gates, base_label)


def _judged_gates(comparison: RetrievalComparison, gates: Gates, base_label: str) -> list[tuple[str, GateResult]]:
    head, base = comparison.head, comparison.base
    checks = []
    for name, minimum, max_drop, change in (
            ("context_precision", gates.min_context_precision, gates.max_context_precision_drop,
             comparison.context_precision),
            ("context_recall", gates.min_context_recall, gates.max_context_recall_drop, comparison.context_recall)):
        figure = name.replace("_", " ")
        if minimum is not None:
            checks.append((f"min_{name}", stats.min_judged(figure, getattr(head, name), minimum,
                                                           getattr(base, name) if base else None, base_label)))
        if max_drop is not None and base is not None:
            checks.append((f"max_{name}_drop", stats.judged_drop_gate(figure, change, max_drop)))
    return checks


def _recall_at_k_gates(comparison: RetrievalComparison, gates: Gates,
                       base_label: str) -> list[tuple[str, GateResult]]:
    if not comparison.head.scored:
        return []
    head, base = comparison.head, comparison.base
    checks = []
    if gates.min_recall_at_k is not None:
        checks.append(("min_recall_at_k", stats.min_recall(head.recall, gates.min_recall_at_k, head.k,
                                                           base.recall if base and base.scored else None,
                                                           base_label)))
    if gates.max_recall_drop is not None and base is not None:
        checks.append(("max_recall_drop", stats.recall_drop_gate(
            base.recall if base.scored else None, head.recall, comparison.drop, gates.max_recall_drop,
            comparison.paired, comparison.lost)))
    return checks
