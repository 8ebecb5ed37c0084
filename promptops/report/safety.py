"""Untrusted text (model output, case inputs from a pull request) made safe for GitHub Markdown,
for the Actions log, and rid of secrets.

A PR comment is rendered by GitHub for everyone watching the repository, so a
model's answer must not be able to break the report's layout, inject HTML,
ping people (``@user``, ``@org/team``), cross-reference issues (``#123``) or
plant links. ``inline`` escapes for a table cell, a sentence or the text of an
HTML element such as ``<summary>`` (one escaper for every section: it uses
character references, which GitHub honours in Markdown and in HTML alike,
where backslash escapes are shown as they are inside HTML); ``block`` fences
text so nothing inside it is Markdown at all. ``inert_log`` keeps text printed
in a GitHub Actions job from being read as a workflow command. ``Redactor``
removes secrets, in every escaped form a report may show them in, from
anything that leaves the job (comment, step summary, files, logs, the cache).
"""

from __future__ import annotations

import copy as _copy
import dataclasses
import functools
import html
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

T = TypeVar("T")

# U+2060 WORD JOINER: invisible, and GitHub's mention, issue-reference and
# autolink matchers all need a letter or digit where it stands.
JOINER = "\u2060"

# C0/C1 controls (tab and newline are handled separately) and the bidi
# overrides that can make text read differently from what it is.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# HTML as entities (so `&lt;` typed by a model stays visible as text) and Markdown punctuation as
# numeric character references (emphasis, links, images, code spans, strikethrough, table cells,
# math): a reference is literal text in Markdown and in HTML, so the same escape holds in a table
# cell and inside <summary>, where GitHub would show a backslash escape as it is.
_INLINE_ESCAPES = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;",
    **{c: f"&#{ord(c)};" for c in "\\`*_[]~|#$"},
})
# Run on the raw text, before the escapes above: each needs the character it guards to be there.
_NEUTRALISE = [
    (re.compile(r"@(?=\w)"), "@" + JOINER),                        # @user, @org/team, user@example.com
    (re.compile(r"#(?=\d)"), "#" + JOINER),                        # #123, owner/repo#123
    (re.compile(r"\b(GH-)(?=\d)", re.IGNORECASE), r"\1" + JOINER),  # GH-123
    (re.compile(r"\b([a-z][a-z0-9+.-]*:)//", re.IGNORECASE), r"\1/" + JOINER + "/"),  # autolinked URLs
    (re.compile(r"\b(www)\.", re.IGNORECASE), r"\1" + JOINER + "."),
    # A 7-40 hex digit word links to that commit, a fork's too (an "imposter commit" under this repository's name).
    (re.compile(r"\b([0-9a-f]{4})(?=[0-9a-f]{3,}\b)", re.IGNORECASE), r"\1" + JOINER),
]
# What would start a list, heading or thematic break if the text opened a line.
_LINE_START = [
    (re.compile(r"^([-+=])"), lambda m: f"&#{ord(m[1])};"),
    (re.compile(r"^(\d+)([.)])"), lambda m: f"{m[1]}&#{ord(m[2])};"),
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
    ``| < > &`` and Markdown punctuation become character references (valid in
    Markdown and inside an HTML element such as ``<summary>``); mentions, issue
    references and bare URLs get an invisible word joiner so they stay plain
    text. Longer text is cut with "… (N more chars)".
    """
    shown, note = _cut(" ".join(_CONTROLS.sub("", str(text)).split()), max_chars)
    return _neutralise(shown) + note


def _neutralise(text: str, line_start: bool = True) -> str:
    for pattern, replacement in _NEUTRALISE:
        text = pattern.sub(replacement, text)
    text = text.translate(_INLINE_ESCAPES)
    for pattern, replace in _LINE_START if line_start else ():
        text = pattern.sub(replace, text)
    return text


def block(text: str, max_chars: int | None = 2000, language: str = "text") -> str:
    """``text`` in a fenced code block that nothing inside it can close (``max_chars`` None: all of it).

    The fence is one backtick longer than the longest backtick run in the text
    (a ``~~~`` line never closes a backtick fence). Inside a fence GitHub
    renders no HTML, mentions, references or links. The result starts with a
    blank line, which ends any HTML block (``<details>``, ``<summary>``) written
    before it, and ends with a newline. Longer text is cut with a note inside
    the fence.
    """
    text = _CONTROLS.sub("", str(text).replace("\r\n", "\n").replace("\r", "\n"))
    shown, note = _cut(text, len(text) if max_chars is None else max_chars)
    text = f"{shown}\n{note}" if note else shown
    fence = fence_for(text)
    return f"\n{fence}{language}\n{text}\n{fence}\n"


def fence_for(text: str) -> str:
    """A backtick fence longer than any backtick run in ``text``, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


REDACTED = "***"
# Don't redact trivially short values: "true" or "1" would mangle every text.
MIN_SECRET_CHARS = 6
# Anywhere in the name (PGPASSWORD, WATSONX_ZENAPIKEY, HFTOKEN), or as a word of it (DB_PASS; not TOKENIZER,
# PASSENGERS or MONKEY).
_SECRET_NAME = re.compile(r"API_?KEY|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|TOKEN(_|$)|(^|_)(KEY|PAT|PASS)(_|$)",
                          re.IGNORECASE)
_ANY_U = r"(?:&#95;|\\?_)"  # an underscore, or one a Markdown renderer or inline() escaped
# Shapes of well-known credentials, redacted wherever they appear, known or not, escaped or not.
_TOKEN_SHAPES = re.compile(
    rf"\b(?:gh[pousr]{_ANY_U}[A-Za-z0-9]{{30,}}"               # GitHub tokens: personal, OAuth, user, server, refresh
    rf"|github{_ANY_U}pat{_ANY_U}(?:[A-Za-z0-9]|{_ANY_U}){{30,}}"  # GitHub fine-grained personal tokens
    rf"|sk-(?:[A-Za-z0-9-]|{_ANY_U}){{20,}}"                   # OpenAI (sk-proj-...), Anthropic (sk-ant-...), alike
    r"|AKIA[0-9A-Z]{16}"                                       # AWS access key ids
    rf"|AIza(?:[0-9A-Za-z-]|{_ANY_U}){{35}}"                   # Google API keys
    r"|xox[abposr]-[A-Za-z0-9-]{10,})"                         # Slack tokens
)
# The password in a URL, scheme://user:PASSWORD@host, also as inline() leaves it (a joiner after "/" and "@").
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*:/\u2060?/[^/\s:@]*:)[^/\s@]+(@)", re.IGNORECASE)


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


def _forms(secret: str) -> set[str]:
    """``secret`` as every renderer of a report may write it: Markdown (inline), HTML, JSON, XML,
    a URL, a workflow command's data or property, and these nested (JSON inside HTML)."""
    texts = {secret, " ".join(secret.split())}
    texts |= {_neutralise(t, line_start) for t in set(texts) for line_start in (True, False)}
    encoders: list[Callable[[str], str]] = [
        html.escape,                                               # &quot; &#x27;
        lambda t: html.escape(t, quote=False),                     # XML text
        lambda t: t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                   .replace('"', "&#34;").replace("'", "&#39;"),   # Jinja's autoescape (markupsafe)
        lambda t: t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
                   .replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#09;"),  # XML attributes
        lambda t: json.dumps(t)[1:-1],
        lambda t: json.dumps(t, ensure_ascii=False)[1:-1],
        lambda t: quote(t, safe="/"),                              # SARIF artifact URIs
        lambda t: t.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"),  # workflow command data
        lambda t: t.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A").replace(":", "%3A")
                   .replace(",", "%2C"),                           # ... and properties
    ]
    for _ in range(2):  # twice: JSON written into HTML, HTML written into JSON
        texts |= {encode(t) for t in set(texts) for encode in encoders}
    return {t for t in texts if len(t) >= MIN_SECRET_CHARS}


class Redactor:
    """Replaces known secret values (in all their escaped forms), well-known token shapes and URL
    passwords by ``***``. Made once per set of secrets: building it costs more than using it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for s in secrets if len(s) >= MIN_SECRET_CHARS for form in _forms(s)}
        # Longest first: a form that contains another is replaced whole.
        alternatives = "|".join(re.escape(f) for f in sorted(forms, key=lambda f: (-len(f), f)))
        self._known = re.compile(alternatives) if alternatives else None

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        text = _TOKEN_SHAPES.sub(REDACTED, text)
        return _URL_PASSWORD.sub(rf"\1{REDACTED}\2", text)

    def text(self, text: str | None) -> str | None:
        return None if text is None else self(text)

    def data(self, value: T) -> T:
        """A copy of ``value`` (dataclasses, lists, tuples, dicts, nested) with every string redacted.

        Used on a report before it is rendered: a secret is gone before any
        renderer escapes it or cuts it in the middle.
        """
        return self._data(value, {})  # type: ignore[no-any-return]

    def _data(self, value: Any, seen: dict[int, Any]) -> Any:
        if type(value) is str:  # an Enum with a str mixin stays itself
            return self(value)
        if id(value) in seen:
            return seen[id(value)]
        if isinstance(value, (list, tuple, set, frozenset)):
            items = [self._data(item, seen) for item in value]
            copy: Any = value._make(items) if hasattr(value, "_make") else type(value)(items)
        elif type(value) is dict:
            copy = {self._data(k, seen): self._data(v, seen) for k, v in value.items()}
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            copy = _copy.copy(value)  # no __init__ or __post_init__ run again
            for f in dataclasses.fields(value):
                object.__setattr__(copy, f.name, self._data(getattr(value, f.name), seen))
        else:
            return value
        seen[id(value)] = copy
        return copy


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret given (in any escaped form), every well-known token shape and URL
    passwords replaced by ``***``."""
    return Redactor(secrets)(text)


def environment_redactor() -> Redactor:
    """The redactor for this process's secret-looking environment variables (made again only when they change)."""
    return _redactor_for(tuple(secrets_from_env()))


@functools.lru_cache(maxsize=4)
def _redactor_for(secrets: tuple[str, ...]) -> Redactor:
    return Redactor(secrets)


def scrubbed(item: T, *names: str) -> T:
    """A copy of the dataclass ``item`` whose text fields ``names`` hold no secret of the environment."""
    redactor = environment_redactor()
    return dataclasses.replace(item, **{name: redactor.text(getattr(item, name)) for name in names})  # type: ignore[type-var]


# -- the Actions log ------------------------------------------------------------------------------

# The runner reads a line as a command when it starts with "::" (after leading white space), and
# finds the legacy "##[command]" anywhere in a line; it splits lines at "\r" as well as "\n".
_COMMAND_START = re.compile(r"(^|[\r\n])(\s*?):(?=:)")
_LEGACY_COMMAND = "##["


def inert_log(text: str) -> str:
    """``text`` with no line the Actions runner would obey: a word joiner breaks up a "::" that
    opens a line and every "##[". Lines and what they say stay as they were."""
    text = _COMMAND_START.sub(lambda m: f"{m[1]}{m[2]}:{JOINER}", text)
    return text.replace(_LEGACY_COMMAND, "##" + JOINER + "[")


def log_line(text: str) -> str:
    """``text`` as one inert log line: line breaks and other controls shown escaped, never obeyed."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return inert_log(text)
