"""answer_relevance: the share of the answer's statements relevant to the question.

One call lists the answer's statements, each relevant to the question or not;
the score is the share relevant; threshold 0.7. The case must have a question.
"""

from __future__ import annotations

from promptops.evals.assertions._verdicts import NOT_JSON, failed, find_json, is_object_list, scored, share
from promptops.evals.assertions.base import AssertionResult, JudgedType, JudgeInput, JudgeSession
from promptops.specs import Assertion


class AnswerRelevance(JudgedType):
    name = "answer_relevance"
    default_threshold = 0.7

    async def judge(self, assertion: Assertion, given: JudgeInput, session: JudgeSession, model: str,
                    threshold: float) -> AssertionResult:
        if given.question is None:
            raise ValueError("an answer_relevance assertion needs the question the answer answers")
        output = given.answer.output
        if not output.strip():
            return scored(0.0, threshold, "output is empty")
        reply = await session.ask(model, "relevance.j2", question=given.question, answer=output)
        if isinstance(reply, AssertionResult):
            return reply
        verdicts = find_json(reply, is_object_list)
        if verdicts is None:
            return failed(NOT_JSON)
        if not verdicts:
            return scored(0.0, threshold, "judge found no statements in the answer")
        statements = [str(v.get("statement", "")) for v in verdicts]
        return share(statements, [v.get("relevant") is True for v in verdicts], threshold, "statements relevant",
                     "irrelevant", len(verdicts))


TYPE = AnswerRelevance()
