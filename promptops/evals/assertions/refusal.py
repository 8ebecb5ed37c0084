"""refusal: the answer declines to answer.

An answer refuses when, ignoring case, curly apostrophes, leading
punctuation and lead-in words such as "Sorry," or "Unfortunately,", it starts
with one of REFUSAL_PHRASES, or when at least half of its sentences contain
one. The list is English and includes "I don't know": declining to answer
outside the passages is the refusal a RAG prompt asks for. It is a heuristic; a
``regex`` or ``llm_rubric`` assertion checks finer intent.
"""

from __future__ import annotations

import re
from typing import Any

from promptops.evals.assertions.base import Answer, AssertionResult, AssertionType, outcome, quote
from promptops.specs import Assertion

REFUSAL_PHRASES: tuple[str, ...] = (
    # declining
    "i can't", "i cannot", "i can not", "i won't", "i will not", "i must decline", "i have to decline",
    "i'm unable", "i am unable", "i'm not able", "i am not able",
    "i'm not allowed", "i am not allowed", "i'm not permitted", "i am not permitted",
    # apologising
    "i'm sorry", "i am sorry", "i apologize", "i apologise", "my apologies",
    # not knowing
    "i don't know", "i do not know", "i'm not sure", "i am not sure",
    "i don't have enough information", "i do not have enough information",
    "i don't have information", "i do not have information",
    # disclaiming
    "as an ai", "as a language model",
)


_PHRASE = re.compile(r"\b(?:" + "|".join(map(re.escape, REFUSAL_PHRASES)) + r")\b")
_LEAD_INS = ("sorry", "unfortunately", "apologies", "alas", "no", "well", "honestly", "i'm afraid", "i am afraid")
_LEAD_IN = re.compile(r"(?:[\W_]*(?:" + "|".join(map(re.escape, _LEAD_INS)) + r")\b)*[\W_]*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n")
_APOSTROPHES = str.maketrans("’‘ʼ`´", "'''''")


class Refusal(AssertionType):
    name = "refusal"

    def assess(self, assertion: Assertion, answer: Answer, value: Any) -> AssertionResult:
        text = answer.output.translate(_APOSTROPHES).casefold()
        lead_in = _LEAD_IN.match(text)  # always matches, if only the empty string
        opening = _PHRASE.match(text, lead_in.end() if lead_in else 0)
        if opening:
            return outcome(True, f"output refuses: it opens with {quote(opening.group())}")
        sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
        refusing = [s for s in sentences if _PHRASE.search(" ".join(s.split()))]
        if refusing and 2 * len(refusing) >= len(sentences):
            return outcome(True, f"output refuses: {len(refusing)} of {len(sentences)} sentences decline")
        return outcome(False, "output is not a refusal")


TYPE = Refusal()
