"""Untrusted text (model output, case inputs from a pull request) made safe for GitHub Markdown.

A PR comment is rendered by GitHub for everyone watching the repository, so a
model's answer must not be able to break the report's layout, inject HTML,
ping people (``@user``, ``@org/team``), cross-reference issues (``#123``) or
plant links. ``inline`` escapes for a table cell or a sentence; ``block``
fences text so nothing inside it is Markdown at all. ``redact`` removes
secrets from anything that leaves the job (comment, step summary, logs).
"""

from __future__ import annotations

import os
import re
from typing import Iterable, Mapping

# U+2060 WORD JOINER: invisible, and GitHub's mention, issue-reference and
# autolink matchers all need a letter or digit where it stands.
JOINER = "\u2060"

# C0/C1 controls (tab and newline are handled separately) and the bidi
# overrides that can make text read differently from what it is.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# One pass: HTML as entities (so `&lt;` typed by a model stays visible as
# text), Markdown punctuation backslash-escaped (emphasis, links, images, code
# spans, strikethrough, table cells, math).
_INLINE_ESCAPES = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;",
    **{c: "\\" + c for c in "\\`*_[]~|#$"},
})
_NEUTRALISE = [
    (re.compile(r"@(?=\w)"), "@" + JOINER),                        # @user, @org/team, user@example.com
    (re.compile(r"#(?=\d)"), "#" + JOINER),                        # #123, owner/repo#123
    (re.compile(r"\b(GH-)(?=\d)", re.IGNORECASE), r"\1" + JOINER),  # GH-123
    (re.compile(r"\b([a-z][a-z0-9+.-]*:)//", re.IGNORECASE), r"\1/" + JOINER + "/"),  # autolinked URLs
    (re.compile(r"\b(www)\.", re.IGNORECASE), r"\1" + JOINER + "."),
    # What would start a list, heading or thematic break if the text opened a line.
    (re.compile(r"^([-+=])"), r"\\\1"),
    (re.compile(r"^(\d+)([.)])"), r"\1\\\2"),
]


def _cut(text: str, max_chars: int) -> tuple[str, str]:
    """The part of ``text`` to show, and a note of what was left out ("" when nothing was)."""
    max_chars = max(max_chars, 0)
    if len(text) <= max_chars:
        return text, ""
    return text[:max_chars], f"… ({len(text) - max_chars:,} more chars)"


def inline(text: str, max_chars: int = 200) -> str:
    """``text`` as one harmless line of Markdown, at most ``max_chars`` of it shown.

    Whitespace (line breaks included) collapses to single spaces; controls go;
    ``| < > &`` and Markdown punctuation are escaped; mentions, issue
    references and bare URLs get an invisible word joiner so they stay plain
    text. Longer text is cut with "… (N more chars)".
    """
    shown, note = _cut(" ".join(_CONTROLS.sub("", str(text)).split()), max_chars)
    return _neutralise(shown) + note


def _neutralise(text: str) -> str:
    text = text.translate(_INLINE_ESCAPES)
    for pattern, replacement in _NEUTRALISE:
        text = pattern.sub(replacement, text)
    return text


def block(text: str, max_chars: int = 2000) -> str:
    """``text`` in a fenced code block that nothing inside it can close.

    The fence is one backtick longer than the longest backtick run in the text
    (a ``~~~`` line never closes a backtick fence). Inside a fence GitHub
    renders no HTML, mentions, references or links. The result starts with a
    blank line, which ends any HTML block (``<details>``, ``<summary>``) written
    before it, and ends with a newline. Longer text is cut with a note inside
    the fence.
    """
    text = _CONTROLS.sub("", str(text).replace("\r\n", "\n").replace("\r", "\n"))
    shown, note = _cut(text, max_chars)
    text = f"{shown}\n{note}" if note else shown
    fence = fence_for(text)
    return f"\n{fence}text\n{text}\n{fence}\n"


def fence_for(text: str) -> str:
    """A backtick fence longer than any backtick run in ``text``, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


REDACTED = "***"
# Don't redact trivially short values: "true" or "1" would mangle every text.
MIN_SECRET_CHARS = 6
_SECRET_NAME = re.compile(r"(^|_)(API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIALS?|PAT)(_|$)",
                          re.IGNORECASE)
# Shapes of well-known credentials, redacted wherever they appear, known or not.
_TOKEN_SHAPES = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}"        # GitHub tokens: personal, OAuth, user, server, refresh
    r"|github_pat_[A-Za-z0-9_]{30,}"          # GitHub fine-grained personal tokens
    r"|sk-[A-Za-z0-9_-]{20,}"                 # OpenAI (sk-proj-...), Anthropic (sk-ant-...) and look-alikes
    r"|AKIA[0-9A-Z]{16}"                      # AWS access key ids
    r"|AIza[0-9A-Za-z_-]{35}"                 # Google API keys
    r"|xox[abposr]-[A-Za-z0-9-]{10,})"        # Slack tokens
)
# The password in a URL: scheme://user:PASSWORD@host
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+(@)", re.IGNORECASE)


def secrets_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (``*_KEY``, ``*_TOKEN``,
    ``*_SECRET``, ``PASSWORD``, ``GITHUB_TOKEN``, ...), long enough to redact safely.

    A multi-line value (a PEM key) counts line by line too, as GitHub Actions
    masks it.
    """
    environ = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in environ.items():
        if not _SECRET_NAME.search(name):
            continue
        for candidate in (value, *value.splitlines()):
            candidate = candidate.strip()
            if len(candidate) >= MIN_SECRET_CHARS:
                found.add(candidate)
    return sorted(found)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret given, every well-known token shape and URL passwords replaced by ``***``."""
    # Longest first: a secret that contains another is replaced whole.
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _TOKEN_SHAPES.sub(REDACTED, text)
    return _URL_PASSWORD.sub(rf"\1{REDACTED}\2", text)
