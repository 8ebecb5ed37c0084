"""Documents cut into chunks, per a retrieval config's ``chunking``.

``size`` and ``overlap`` count tokens of the embedding model, with the
tokenizer the cost estimate uses (``estimate.tokens``; characters / 4 where it
has none), or characters with ``unit: characters``. No chunk is longer than
``size``; consecutive chunks of a document share up to ``overlap``.

- ``fixed``: windows of ``size`` tokens, each starting ``size - overlap``
  tokens after the one before.
- ``sentence``: whole sentences packed into a chunk while they fit; the
  overlap repeats the last sentences of the chunk before (those that fit in
  ``overlap``).
- ``recursive`` (the default): paragraphs packed like sentences; a paragraph
  too long for a chunk is cut into sentences, a sentence too long into windows.
- ``markdown``: each section (a heading and what follows, up to the next
  heading) is cut as ``recursive`` does, so no chunk spans two sections.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from promptops.estimate.tokens import TokenCounter
from promptops.retrieval.corpus import Document
from promptops.retrieval.settings import STRATEGIES, ChunkingSpec

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s)|\n")
_PARAGRAPH_END = re.compile(r"\n[ \t]*\n\s*")
_HEADING = re.compile(r"^#{1,6}[ \t]", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)


class ChunkingError(ValueError):
    """The chunking settings cannot be run; the message says which."""


@dataclass(frozen=True)
class Chunk:
    id: str  # the document's id, '@' and the chunk's number in it, from 0
    document_id: str
    path: str
    text: str
    tokens: int
    metadata: dict[str, Any] = field(default_factory=dict)


class Tokens:
    """Counting and cutting in the unit of ``chunking``: the embedding model's tokens, or characters."""

    def __init__(self, model: str, unit: str, counter: TokenCounter | None = None) -> None:
        self._counter = counter or TokenCounter()
        self._model, self._unit = model, unit
        self._counts: dict[str, int] = {}  # packing counts the same texts again and again

    def count(self, text: str) -> int:
        if self._unit == "characters":
            return len(text)
        if text not in self._counts:
            self._counts[text] = self._counter.count_text(self._model, text)
        return self._counts[text]

    def starts(self, text: str) -> list[int]:
        return list(range(len(text))) if self._unit == "characters" else self._counter.token_starts(self._model, text)

    def windows(self, text: str, size: int, overlap: int) -> list[str]:
        """``text`` cut into windows of at most ``size`` whole tokens, each ``size - overlap`` after the last."""
        if self.count(text) <= size:
            return [text]  # no offsets needed: finding them costs more than counting
        starts = self.starts(text)
        pieces = []
        for first in range(0, len(starts), size - overlap):
            end = starts[first + size] if first + size < len(starts) else len(text)
            pieces.append(text[starts[first]:end])
            if first + size >= len(starts):
                break
        return pieces


def chunk_documents(documents: Iterable[Document], spec: ChunkingSpec, tokens: Tokens) -> list[Chunk]:
    """Every document's chunks, in document order."""
    if spec.strategy not in STRATEGIES:
        raise ChunkingError(f"chunking.strategy '{spec.strategy}' is not run by promptops yet "
                            f"(it runs {', '.join(STRATEGIES)})")
    if not 0 <= spec.overlap < spec.size:
        raise ChunkingError(f"chunking.overlap ({spec.overlap}) must be smaller than chunking.size ({spec.size})")
    split = _SPLITTERS[spec.strategy]
    chunks = []
    for document in documents:
        texts = [t.strip() for t in split(document.text, spec, tokens)]
        for number, text in enumerate(t for t in texts if t):
            chunks.append(Chunk(f"{document.id}@{number}", document.id, document.path, text, tokens.count(text),
                                document.metadata))
    return chunks


def _fixed(text: str, spec: ChunkingSpec, tokens: Tokens) -> list[str]:
    return tokens.windows(text, spec.size, spec.overlap)


def _sentences(text: str, spec: ChunkingSpec, tokens: Tokens) -> list[str]:
    return _pack(_cut(text, _SENTENCE_END), spec, tokens, _fixed)


def _recursive(text: str, spec: ChunkingSpec, tokens: Tokens) -> list[str]:
    return _pack(_cut(text, _PARAGRAPH_END), spec, tokens, _sentences)


def _markdown(text: str, spec: ChunkingSpec, tokens: Tokens) -> list[str]:
    return [chunk for section in _sections(text) for chunk in _recursive(section, spec, tokens)]


def _cut(text: str, boundary: re.Pattern[str]) -> list[str]:
    """``text`` cut after each match of ``boundary``; the pieces join back into ``text``."""
    ends = [m.end() for m in boundary.finditer(text)]
    return [text[a:b] for a, b in zip([0, *ends], [*ends, len(text)]) if b > a]


def _sections(text: str) -> list[str]:
    """A Markdown text cut before each heading that is not inside a fenced code block."""
    fenced = [m.start() for m in _FENCE.finditer(text)]
    starts = [0] + [m.start() for m in _HEADING.finditer(text)
                    if m.start() and sum(1 for f in fenced if f < m.start()) % 2 == 0]
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)]) if b > a]


def _pack(units: list[str], spec: ChunkingSpec, tokens: Tokens,
          too_long: Callable[[str, ChunkingSpec, Tokens], list[str]]) -> list[str]:
    """Consecutive units joined into chunks of at most ``size``; a unit longer than that is cut by ``too_long``.

    A new chunk starts with the last units of the one before that fit in ``overlap``.
    """
    chunks: list[str] = []
    current: list[str] = []
    for unit in units:
        if tokens.count(unit) > spec.size:
            if current:
                chunks.append("".join(current))
            chunks.extend(too_long(unit, spec, tokens))
            current = []
            continue
        if tokens.count("".join([*current, unit])) <= spec.size:
            current.append(unit)
            continue
        chunks.append("".join(current))
        current = [*_tail(current, spec.overlap, tokens), unit]
        while len(current) > 1 and tokens.count("".join(current)) > spec.size:
            current.pop(0)  # the overlap gives way to the new unit
    if current:
        chunks.append("".join(current))
    return chunks


def _tail(units: list[str], overlap: int, tokens: Tokens) -> list[str]:
    """The last units whose text fits in ``overlap``."""
    kept: list[str] = []
    for unit in reversed(units):
        if tokens.count("".join([unit, *kept])) > overlap:
            break
        kept.insert(0, unit)
    return kept


_SPLITTERS: dict[str, Callable[[str, ChunkingSpec, Tokens], list[str]]] = {
    "fixed": _fixed, "sentence": _sentences, "recursive": _recursive, "markdown": _markdown,
}
