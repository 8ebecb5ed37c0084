"""The embedded demo model answers from the passages it is given: retrieved chunks span lines and carry
Markdown headings, and a passage it does not get is an answer it cannot give."""

from __future__ import annotations

import json

from promptops.evals.judges import judge_call
from promptops.testing.demo import REFUSAL, respond

ANNUAL = ("## Cancelling an annual plan\n\n"
          "Annual plans cancelled after 30 days are not refunded;\nthe plan stays active.")
REFUNDS = "## Asking for a refund\n\nYou can ask for a full refund within 30 days of purchase."
QUESTION = "We paid for an annual plan two months ago. Can we still ask for a refund?"


def answer(passages: list[str], system: str = "Cite the passages you used.") -> str:
    numbered = "".join(f"[{n}] {p}\n" for n, p in enumerate(passages, start=1))
    user = f"Customer plan: pro\nPassages:\n{numbered}\nQuestion: {QUESTION}"
    return respond({"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]})


def test_a_passage_runs_over_lines_to_the_next_number_and_is_quoted_without_its_heading() -> None:
    assert answer([REFUNDS, ANNUAL]) == ("Annual plans cancelled after 30 days are not refunded; the plan stays "
                                         "active. [2]")
    assert answer([ANNUAL], system="Answer briefly.").startswith("Annual plans cancelled")  # no citation asked


def test_without_the_passage_that_holds_it_the_answer_changes() -> None:
    assert answer([REFUNDS]) == "You can ask for a full refund within 30 days of purchase. [1]"
    assert answer([]) == REFUSAL


def test_it_judges_a_retrieved_passage_relevant_by_the_question_words_it_holds() -> None:
    """On the prompt the context-precision judge renders: a suite with retrieval.judge works on the demo model."""
    def relevant(passage: str) -> bool:
        messages = judge_call("m", "passage.j2", "judge:p", "c", question=QUESTION, passage=passage).messages
        return bool(json.loads(respond({"messages": messages}))["relevant"])

    assert relevant(ANNUAL) is True
    assert relevant("Study rooms seat six and can be booked at the front desk.") is False
