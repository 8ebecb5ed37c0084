"""Judged context precision and context recall: an LLM judge grades the passages retrieval gave each case.

Opt-in per suite, as ``retrieval: {judge: [context_precision, context_recall], model: ...}`` in the
eval suite, not as assertion types: these figures grade retrieval, not the answer. An assertion is
judged on every sample of every answer and counts in the case's pass or fail; these are judged
once per case and side (a case's passages are the same for every sample), sit beside recall@k in
the suite's ``RetrievalRun`` and are compared base against head like it (``evals/recall.py``,
``stats.judged_change``), so a retrieval change shows its judged effect without failing answers.
Judge calls cost money, hence opt-in; lint's schema check (PO503) reads the key.

- **Context precision**: one judge call per retrieved passage (``templates/judges/passage.j2``:
  is it relevant to the question?); the case's figure is the share of its passages judged relevant,
  weighted by rank as DCG weighs them (``CaseRetrieval.context_precision``). One call a passage, not
  one a case, so that a verdict is cached by (question, passage): a passage both refs retrieve is
  judged once and gets the same verdict on both sides, and a ``top_k`` cut asks nothing new of it.
- **Context recall**: the case's ``expected`` answer split into claims (``claims.j2``, cached by
  question and expected, so the same claims on both sides), then one call checking every claim
  against all the passages together (``verdicts.j2``: a claim may need two of them); the figure is
  the share supported. A case with no text ``expected``, or one that states no claim, is not judged.

Every call goes through ``runner.run_calls`` with the run's settings: cached like answers (an
unchanged question and passage make no call on a re-run), retried, and counted in ``--max-cost``
(``settings.budget``). What judging cost now is reported apart from the answers' and the
embeddings' cost. A call that fails leaves its case unjudged for that figure and is named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from promptops.evals.assertions._verdicts import find_json, is_object_list
from promptops.evals.judges import JudgeSpend, judge_call, reply_of
from promptops.evals.runner import RunSettings, run_calls
from promptops.model.evals import Call, CallOutcome
from promptops.models import ModelCatalog
from promptops.resultcache import ResultCache

CONTEXT_PRECISION = "context_precision"
CONTEXT_RECALL = "context_recall"
KINDS = (CONTEXT_PRECISION, CONTEXT_RECALL)


@dataclass(frozen=True)
class ContextCase:
    """What the judge sees of one case: its question, the passages it got, its expected answer as text."""

    case_id: str
    question: str
    passages: Sequence[str]
    expected: str | None


@dataclass
class ContextVerdicts:
    """Per case, the judge's verdicts (only the cases judged), and what judging spent now."""

    relevant: dict[str, tuple[bool, ...]] = field(default_factory=dict)  # per passage, in rank order
    supported: dict[str, tuple[bool, ...]] = field(default_factory=dict)  # per claim of the expected answer
    spend: JudgeSpend = field(default_factory=JudgeSpend)
    unjudged: dict[str, dict[str, str]] = field(default_factory=dict)  # by figure: case id -> why it went unjudged

    def fail(self, figure: str, case_id: str, why: str | None) -> None:
        self.unjudged.setdefault(figure, {}).setdefault(case_id, why or "no answer")

    @property
    def failures(self) -> list[str]:
        """A line per figure the judge could not give every case, naming them and the first reason."""
        return [f"{figure.replace('_', ' ')} not judged for {len(cases)} case(s) ({', '.join(list(cases)[:5])}"
                + (", ..." if len(cases) > 5 else "") + f"): {next(iter(cases.values()))}"
                for figure, cases in self.unjudged.items()]


def expected_text(expected: Any) -> str | None:
    """A case's expected answer as the judge reads it: text or a number; anything else is not judged."""
    if isinstance(expected, bool) or not isinstance(expected, (str, int, float)):
        return None
    text = str(expected).strip()
    return text or None


async def judge_contexts(cases: Sequence[ContextCase], kinds: Sequence[str], model: str, prompt_id: str,
                         cache: ResultCache, settings: RunSettings, catalog: ModelCatalog) -> ContextVerdicts:
    """The verdicts ``kinds`` ask for, for every case, in two rounds of calls (each one batch through the runner):
    passages and claims first, then the claims' verdicts."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown retrieval.judge figure(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    judge_id = f"judge:{prompt_id}"
    verdicts = ContextVerdicts()
    passage_calls = {(case.case_id, rank): judge_call(model, "passage.j2", judge_id, case.case_id,
                                                      question=case.question, passage=passage)
                     for case in cases if CONTEXT_PRECISION in kinds for rank, passage in enumerate(case.passages)}
    claim_calls = {case.case_id: judge_call(model, "claims.j2", judge_id, case.case_id, question=case.question,
                                            answer=case.expected)
                   for case in cases if CONTEXT_RECALL in kinds and case.expected is not None}
    answers = await _asked([*passage_calls.values(), *claim_calls.values()], cache, settings, catalog, verdicts)
    for case in cases:
        if CONTEXT_PRECISION in kinds:
            _precision(case, [answers[passage_calls[case.case_id, rank].key] for rank in range(len(case.passages))],
                       verdicts)
    claims = {case_id: _claims(case_id, answers[call.key], verdicts) for case_id, call in claim_calls.items()}
    by_id = {case.case_id: case for case in cases}
    verdict_calls = {case_id: judge_call(model, "verdicts.j2", judge_id, case_id,
                                         passages=list(by_id[case_id].passages), claims=found)
                     for case_id, found in claims.items() if found}
    answers = await _asked(list(verdict_calls.values()), cache, settings, catalog, verdicts)
    for case_id, call in verdict_calls.items():
        _recall(case_id, claims[case_id] or [], answers[call.key], verdicts)
    for case_id, found in claims.items():
        if found == []:  # an expected answer that states no claim: nothing for the passages to support
            verdicts.supported[case_id] = ()
    return verdicts


async def _asked(calls: list[Call], cache: ResultCache, settings: RunSettings, catalog: ModelCatalog,
                 verdicts: ContextVerdicts) -> dict[str, CallOutcome]:
    """Each distinct call once (two cases with the same question and passage share a verdict), by key."""
    unique = list({call.key: call for call in calls}.values())
    outcomes = await run_calls(unique, cache, settings, catalog=catalog) if unique else []
    for outcome in outcomes:
        verdicts.spend.count(outcome)
    return {outcome.call.key: outcome for outcome in outcomes}


def _precision(case: ContextCase, outcomes: list[CallOutcome], verdicts: ContextVerdicts) -> None:
    relevant = []
    for rank, outcome in enumerate(outcomes, start=1):
        reply = reply_of(outcome)
        found = None if reply is None else find_json(
            reply, lambda v: isinstance(v, dict) and isinstance(v.get("relevant"), bool))
        if found is None:
            why = outcome.error if reply is None else "the judge's answer held no {\"relevant\": true|false}"
            verdicts.fail(CONTEXT_PRECISION, case.case_id, f"passage {rank}: {why}")
            return
        relevant.append(bool(found["relevant"]))
    verdicts.relevant[case.case_id] = tuple(relevant)


def _claims(case_id: str, outcome: CallOutcome, verdicts: ContextVerdicts) -> list[str] | None:
    """The expected answer's claims, one line each (the verdicts prompt numbers them); None: no answer."""
    reply = reply_of(outcome)
    found = None if reply is None else find_json(reply, lambda v: isinstance(v, list)
                                                 and all(isinstance(c, str) for c in v))
    if found is None:
        why = outcome.error if reply is None else "the judge's claims were not a JSON list of strings"
        verdicts.fail(CONTEXT_RECALL, case_id, why)
        return None
    return [" ".join(claim.split()) for claim in found if claim.strip()]


def _recall(case_id: str, claims: list[str], outcome: CallOutcome, verdicts: ContextVerdicts) -> None:
    """A claim the judge gave no verdict is unsupported, as groundedness reads it."""
    reply = reply_of(outcome)
    found = None if reply is None else find_json(reply, is_object_list)
    if found is None:
        why = outcome.error if reply is None else "the judge's verdicts were not a JSON list of objects"
        verdicts.fail(CONTEXT_RECALL, case_id, why)
        return
    verdicts.supported[case_id] = tuple(index < len(found) and found[index].get("supported") is True
                                        for index in range(len(claims)))
