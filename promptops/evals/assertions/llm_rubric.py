"""llm_rubric: a judge model grades the answer against the value, a rubric, in one call.

The judge's ``score`` (0..1) against the assertion's threshold (default 0.5)
decides. The judge's own ``pass`` stands in only when it gives no score: the
threshold is the suite's to set. The judge sees the question as context.
"""

from __future__ import annotations

from promptops.evals.assertions._verdicts import NOT_JSON, failed, find_json, is_fraction, mark, scored
from promptops.evals.assertions.base import AssertionResult, JudgedType, JudgeInput, JudgeSession, clip
from promptops.specs import Assertion


class LlmRubric(JudgedType):
    name = "llm_rubric"
    default_threshold = 0.5
    needs_value = True

    async def judge(self, assertion: Assertion, given: JudgeInput, session: JudgeSession, model: str,
                    threshold: float) -> AssertionResult:
        rubric = self.rendered_value(assertion, given)
        if isinstance(rubric, AssertionResult):
            return rubric
        reply = await session.ask(model, "rubric.j2", rubric=rubric, question=given.question,
                                  answer=given.answer.output)
        if isinstance(reply, AssertionResult):
            return reply
        verdict = find_json(reply, lambda v: isinstance(v, dict) and ("score" in v or "pass" in v))
        if verdict is None:
            return failed(NOT_JSON)
        score = verdict.get("score")
        if score is None and isinstance(verdict.get("pass"), bool):
            score = 1.0 if verdict["pass"] else 0.0
        if not is_fraction(score):
            return failed(f"judge answer gave no score from 0 to 1 (score: {clip(repr(score))})")
        reason = " ".join(str(verdict.get("reason") or "no reason given").split())  # one line in reports
        return scored(float(score), threshold, f"rubric score {mark(score, threshold)}: {clip(reason, 200)}")


TYPE = LlmRubric()
