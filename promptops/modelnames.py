"""Which known model a mistyped model name was meant to be: "did you mean openai/gpt-4o-mini?".

Model families name distinct models by small differences, so a plain edit
distance would call many real models typos of each other. A written name is
taken for a typo of a known name (of the same provider) only when they have
the same words in the same order (runs of letters, runs of digits), the same
numbers, and differ by at most two edits (one in a name under 10 characters),
each of one of these kinds:

- two neighbouring letters swapped: gtp-4o / gpt-4o;
- a letter doubled or undoubled: sonnnet / sonnet;
- a letter dropped or added inside a word of 4 letters or more, not at its
  start or end: gpt-4o-mni / gpt-4o-mini;
- a letter changed in a word of 5 letters or more: claude-3-5-haiko / haiku;
- a separator added, dropped or changed: gpt4o-mini / gpt-4o-mini.

Letter case alone also makes a typo. What never does, because that is how
distinct models are named: other numbers (gpt-4 / gpt-5, o1 / o3, another
date or size), a word more or less (gpt-4 / gpt-4o, gpt-4o / gpt-4o-mini), a
letter added at a word's start or end (flash / flashx, high / xhigh), a letter
changed in a short word (lite / live, command-a / command-r, eu / us), and two
edits in one word (mistral / pixtral, fast / flash).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"[a-z]+|[0-9]+")
SHORT_NAME = 10  # characters: a shorter name may hold one edit, a longer one two
MIN_INNER_EDIT_WORD = 4  # letters, for a letter dropped or added inside the word
MIN_CHANGED_LETTER_WORD = 5  # letters, for a letter changed


def typo_edits(written: str, known: str) -> int | None:
    """How many typo edits turn ``written`` into ``known`` (0: letter case only); None if it is not a typo."""
    written_words, written_gaps = _split(written.lower())
    known_words, known_gaps = _split(known.lower())
    if len(written_words) != len(known_words):
        return None
    edits = sum(a != b for a, b in zip(written_gaps, known_gaps))
    for a, b in zip(written_words, known_words):
        if a == b:
            continue
        if a.isdigit() or b.isdigit() or not _one_letter_typo(a, b):
            return None
        edits += 1
    return edits


def closest(written: str, known: Iterable[str]) -> list[str]:
    """The known names ``written`` is a likely typo of, sorted: those with the fewest edits (several on a tie)."""
    allowed = 1 if len(written) < SHORT_NAME else 2
    found: dict[int, list[str]] = {}
    for name in known:
        if abs(len(name) - len(written)) > 2 * allowed:
            continue
        edits = typo_edits(written, name)
        if edits is not None and edits <= allowed:
            found.setdefault(edits, []).append(name)
    return sorted(found[min(found)]) if found else []


def _split(name: str) -> tuple[list[str], list[str]]:
    """The words of a lower-cased name, and the separators around them (one more than the words)."""
    words, gaps, end = [], [], 0
    for match in _WORD.finditer(name):
        gaps.append(name[end:match.start()])
        words.append(match.group())
        end = match.end()
    gaps.append(name[end:])
    return words, gaps


def _one_letter_typo(written: str, known: str) -> bool:
    """One slip inside a word of letters: swapped, doubled, dropped or added inside, or changed in a long word."""
    if len(written) == len(known):
        return _swapped(written, known) or (_changed_letters(written, known) == 1
                                            and len(known) >= MIN_CHANGED_LETTER_WORD)
    if abs(len(written) - len(known)) != 1:
        return False
    shorter, longer = sorted((written, known), key=len)
    at = next((i for i, (a, b) in enumerate(zip(shorter, longer)) if a != b), len(shorter))
    if longer[:at] + longer[at + 1:] != shorter:
        return False
    extra = longer[at]
    doubled = longer[at - 1:at] == extra or longer[at + 1:at + 2] == extra
    inside = 0 < at < len(longer) - 1 and len(longer) >= MIN_INNER_EDIT_WORD
    return doubled or inside


def _swapped(a: str, b: str) -> bool:
    differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if len(differ) != 2 or differ[1] != differ[0] + 1:
        return False
    first, second = differ
    return a[first] == b[second] and a[second] == b[first]


def _changed_letters(a: str, b: str) -> int:
    return sum(x != y for x, y in zip(a, b))
