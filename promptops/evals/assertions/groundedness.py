"""groundedness: the share of the answer's claims that the passages support.

One call splits the answer into atomic claims, one call verdicts each claim
against the numbered passages; the score is the share supported (no claims: 1,
"no factual claims"); threshold 0.8. Verdicts pair with claims in order; a
claim the judge gave no verdict is unsupported. The passages are the var the
assertion's ``context`` names, else the prompt's retrieved passages.
"""

from __future__ import annotations

import json
from typing import Any

from promptops.evals.assertions._verdicts import NOT_JSON, failed, find_json, is_object_list, scored, share
from promptops.evals.assertions.base import AssertionResult, JudgedType, JudgeInput, JudgeSession
from promptops.specs import Assertion


class Groundedness(JudgedType):
    name = "groundedness"
    default_threshold = 0.8

    async def judge(self, assertion: Assertion, given: JudgeInput, session: JudgeSession, model: str,
                    threshold: float) -> AssertionResult:
        passages = _passages(assertion, given)
        if isinstance(passages, AssertionResult):
            return passages
        output = given.answer.output
        if not output.strip():
            return scored(1.0, threshold, "no factual claims")
        reply = await session.ask(model, "claims.j2", question=given.question, answer=output)
        if isinstance(reply, AssertionResult):
            return reply
        claims = find_json(reply, lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v))
        if claims is None:
            return failed(NOT_JSON)
        claims = [" ".join(claim.split()) for claim in claims if claim.strip()]  # one line each: the list is numbered
        if not claims:
            return scored(1.0, threshold, "no factual claims")
        reply = await session.ask(model, "verdicts.j2", passages=passages, claims=claims)
        if isinstance(reply, AssertionResult):
            return reply
        verdicts = find_json(reply, is_object_list)
        if verdicts is None:
            return failed(NOT_JSON)
        supported = [index < len(verdicts) and verdicts[index].get("supported") is True for index in range(len(claims))]
        return share(claims, supported, threshold, "claims supported", "unsupported", len(verdicts))


def _passages(assertion: Assertion, given: JudgeInput) -> list[str] | AssertionResult:
    """The passages to check against: the var the assertion's ``context`` names, else those given."""
    name = assertion.context
    if name is None:
        if given.passages is None:
            raise ValueError("a groundedness assertion needs passages: name the var holding them in its context, "
                             "or give the prompt a retrieval config")
        return _texts(given.passages)
    if name not in given.variables:
        return failed(f"the case has no var {name!r} holding the passages")
    return _texts(given.variables[name])


def _texts(value: Any) -> list[str]:
    """Passages as text: a string is one passage; other items (retrieved chunks with metadata) go in as JSON."""
    items = value if isinstance(value, list) else [value]
    return [item if isinstance(item, str) else json.dumps(item, ensure_ascii=False, sort_keys=True)
            for item in items if item is not None]


TYPE = Groundedness()
