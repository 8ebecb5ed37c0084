"""A judge for the stub server: answers promptops' own judge prompts of retrieval (templates/judges: passage,
claims, verdicts) by word overlap, deterministically, with seeded noise if asked.

    stub = StubServer(rules, responder=WordJudge())             # context precision and recall mean something
    stub = StubServer(rules, responder=WordJudge(error_rate=0.2, seed=7))   # each verdict wrong 20% of the time

- passage (context precision): relevant when the passage holds at least ``min_shared`` of the
  question's content words;
- claims: the answer's sentences, one claim each;
- verdicts: a claim is supported when the passages hold every one of its content words.

Content words are lower-cased runs of letters and digits, of three characters or more, that are not
in a short list of function words. A verdict is wrong with probability ``error_rate``, drawn from
the seed and the request (the same request gets the same answer). Any other request returns None,
so the server's rules answer it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from promptops.testing.rules import last_text

_BLOCK = re.compile(r"<<<BEGIN ([A-Z]+)(?: \d+)?>>>\n(.*?)\n<<<END \1(?: \d+)?>>>", re.DOTALL)
_WORD = re.compile(r"[a-z0-9]{3,}")
_FUNCTION_WORDS = frozenset(
    "the and for are was were has have had with that this from into your you our they them their there what when "
    "where which who how why does did should would could can will about after before many much often need needs "
    "any all not but its".split())


def content_words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower())) - _FUNCTION_WORDS


class WordJudge:
    """A ``StubServer`` responder for the retrieval judge prompts (see the module's docstring)."""

    def __init__(self, *, min_shared: int = 1, error_rate: float = 0.0, seed: int = 0) -> None:
        self.min_shared, self.error_rate, self.seed = min_shared, error_rate, seed

    def __call__(self, request: dict[str, Any]) -> str | None:
        text = last_text(request.get("messages") or [], "user")
        blocks: dict[str, list[str]] = {}
        for name, data in _BLOCK.findall(text):
            blocks.setdefault(name, []).append(data)
        if text.startswith("Decide whether the passage is relevant") and {"QUESTION", "PASSAGE"} <= blocks.keys():
            shared = content_words(blocks["QUESTION"][0]) & content_words(blocks["PASSAGE"][0])
            relevant = self._noisy(len(shared) >= self.min_shared, text, 0)
            return json.dumps({"reason": f"shares {len(shared)} word(s) with the question", "relevant": relevant})
        if text.startswith("Split the answer into atomic claims") and "ANSWER" in blocks:
            return json.dumps([s.strip() for s in re.split(r"(?<=[.!?])\s+", blocks["ANSWER"][0]) if s.strip()])
        if text.startswith("For each claim") and "CLAIMS" in blocks:
            words = content_words(" ".join(blocks.get("PASSAGE", [])))
            claims = [re.sub(r"^\d+\.\s*", "", line) for line in blocks["CLAIMS"][0].splitlines() if line.strip()]
            return json.dumps([{"claim": claim, "supported": self._noisy(content_words(claim) <= words, text, index)}
                               for index, claim in enumerate(claims)])
        return None

    def _noisy(self, verdict: bool, text: str, index: int) -> bool:
        if not self.error_rate:
            return verdict
        digest = hashlib.blake2b(f"{self.seed}\0{index}\0{text}".encode(), digest_size=8).digest()
        return verdict != (int.from_bytes(digest, "big") / 2**64 < self.error_rate)
