"""similar: the cosine similarity of the embeddings of the answer and of the value, a reference text.

Below 0 counts as 0; threshold 0.8. The model is the embedding model
(``defaults.embedding`` in promptops.yaml, or the assertion's ``model``).
"""

from __future__ import annotations

import math

from promptops.evals.assertions._verdicts import mark, scored
from promptops.evals.assertions.base import AssertionResult, JudgedType, JudgeInput, JudgeSession, clip
from promptops.specs import Assertion


class Similar(JudgedType):
    name = "similar"
    default_threshold = 0.8
    embeds = True
    needs_value = True

    async def judge(self, assertion: Assertion, given: JudgeInput, session: JudgeSession, model: str,
                    threshold: float) -> AssertionResult:
        reference = self.rendered_value(assertion, given)
        if isinstance(reference, AssertionResult):
            return reference
        output = given.answer.output
        if not output.strip() or not reference.strip():
            return scored(0.0, threshold, "output is empty" if not output.strip() else "the reference text is empty")
        import asyncio  # here, not on lint's path (PO509 imports every type module): 15-40 ms to import

        texts = list(dict.fromkeys((output, reference)))  # the same text is embedded once
        vectors = await asyncio.gather(*(session.embed(model, text) for text in texts))
        for vector in vectors:
            if isinstance(vector, AssertionResult):
                return vector
        score = max(0.0, min(1.0, _cosine(vectors[0], vectors[-1])))  # type: ignore[arg-type]
        return scored(score, threshold, f"similarity {mark(score, threshold)} to {clip(repr(reference))}")


def _cosine(a: list[float], b: list[float]) -> float:
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b)) / norms if norms else 0.0


TYPE = Similar()
