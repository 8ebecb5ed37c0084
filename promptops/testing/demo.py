"""The embedded default model behind `promptops demo`: small, deterministic, offline.

It is no language model. It answers the bundled example's question-answering
prompt the way an extractive reader would (the passage that best overlaps the
question, cited when the system message asks for citations, "I don't know"
when nothing overlaps), and it answers promptops's own judge prompts with word
overlap instead of understanding. That is enough to show a real check end to
end: the same prompt change moves its answers the way it would move a real
model's, and every call still goes through litellm to an OpenAI-compatible server.
"""

from __future__ import annotations

import json
import re
from typing import Any

from promptops.testing.rules import last_text, system_text

_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
_STOP = frozenset("""a an and are as at be by can do does for from how i if in is it its me my of on or our the
this to was what when where which who why will with you your we they their there have has not no yes please
so any about get""".split())
_PASSAGE = re.compile(r"^\[(\d+)\][ \t]*", re.MULTILINE)
_BLOCK = re.compile(r"<<<BEGIN (\w+)[^>]*>>>\n(.*?)\n<<<END \1[^>]*>>>", re.DOTALL)
PASSAGE_RELEVANT = 0.3  # share of the question's content words a relevant passage holds
REFUSAL = "I don't know: the help centre passages don't cover that. I can connect you with a human agent."


def respond(request: dict[str, Any]) -> str:
    """A reply to a chat request, as StubServer's ``responder`` hook."""
    messages = request.get("messages") or []
    user = last_text(messages, "user")
    if "<<<BEGIN" in user:
        return _judge(user)
    return _answer(system_text(messages), user)


def _words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP}


def _stem(word: str) -> str:
    """Crude, but enough for "refund"/"refunds"/"refunded" to meet."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _overlap(text: str, reference: str) -> float:
    """Share of ``text``'s content words that ``reference`` has too."""
    words = _words(text)
    return len(words & _words(reference)) / len(words) if words else 0.0


def _answer(system: str, user: str) -> str:
    before, _, question = user.rpartition("Question:")
    passages = _passages(before)
    scored = sorted(((len(_words(question) & _words(text)), -n, n, text) for n, text in passages), reverse=True)
    if not scored or scored[0][0] < 1:
        return REFUSAL
    _, _, number, passage = scored[0]
    cite = f" [{number}]" if "cite" in system.lower() else ""
    return f"{_prose(passage)}{cite}"


def _passages(text: str) -> list[tuple[int, str]]:
    """The numbered passages: each runs to the next number, since a retrieved chunk spans lines."""
    starts = list(_PASSAGE.finditer(text))
    ends = [m.start() for m in starts[1:]] + [len(text)]
    return [(int(m.group(1)), text[m.end():end].strip()) for m, end in zip(starts, ends)]


def _prose(passage: str) -> str:
    """A passage's text on one line, without its Markdown headings (a reader quotes the body)."""
    lines = [line.strip() for line in passage.splitlines()]
    return " ".join(line for line in lines if line and not line.startswith("#")) or passage


def _judge(prompt: str) -> str:
    blocks: dict[str, list[str]] = {}
    for name, body in _BLOCK.findall(prompt):
        blocks.setdefault(name, []).append(body)
    answer = "\n".join(blocks.get("ANSWER", []))
    if "Split the answer into atomic claims" in prompt:
        return json.dumps([s for s in _sentences(answer) if "don't know" not in s.lower()])
    if "CLAIMS" in blocks:
        passages = "\n".join(blocks.get("PASSAGE", []))
        claims = [re.sub(r"^\d+\.\s*", "", line) for line in blocks["CLAIMS"][0].splitlines() if line.strip()]
        return json.dumps([{"claim": c, "supported": _overlap(c, passages) >= 0.6} for c in claims])
    if "RUBRIC" in blocks:
        score = round(_overlap(blocks["RUBRIC"][0], answer), 2)
        return json.dumps({"reason": f"{score:.0%} of the rubric's words appear in the answer.",
                           "score": score, "pass": score >= 0.5})
    question = "\n".join(blocks.get("QUESTION", []))
    if "PASSAGE" in blocks:  # retrieval.judge's context precision: is this retrieved passage relevant?
        share = _overlap(question, blocks["PASSAGE"][0])
        return json.dumps({"reason": f"{share:.0%} of the question's words appear in the passage.",
                           "relevant": share >= PASSAGE_RELEVANT})
    return json.dumps([{"statement": s, "relevant": "don't know" not in s.lower() and _overlap(question, s) > 0}
                       for s in _sentences(answer)])


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
