"""What the stub answers: scripted rules and injected faults.

Matching and replies are plain data and functions with no HTTP in them, so
they are easy to read in a test and to reuse from a ``responder`` hook.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

FAULT_KINDS = ("timeout", "garbage", "empty", "disconnect")
# A "timeout" holds the request this long unless the server stops first.
DEFAULT_HANG_S = 3600.0


@dataclass(frozen=True)
class Fault:
    """One injected failure.

    ``kind`` is an HTTP status (``"429"``, ``"500"``, ``"503"``, any 4xx or 5xx,
    answered with an OpenAI-style error body), or one of:
    ``"timeout"`` (never answers: holds the request for ``hang_s``, or until the
    server stops, then drops the connection), ``"garbage"`` (a 200 whose body is
    not JSON), ``"empty"`` (a well-formed answer with an empty ``choices`` or
    ``data`` list), ``"disconnect"`` (closes the connection without answering).
    ``retry_after`` (seconds) is sent as a Retry-After header with a 429 or 503;
    None sends none.
    """

    kind: str
    retry_after: float | None = 1.0
    hang_s: float = DEFAULT_HANG_S

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS and not (self.kind.isdigit() and 400 <= int(self.kind) <= 599):
            raise ValueError(f"unknown fault {self.kind!r}: use an HTTP status 400-599 "
                             f"or one of {', '.join(FAULT_KINDS)}")

    @property
    def status(self) -> int | None:
        return int(self.kind) if self.kind.isdigit() else None


# What a fault may be written as: a Fault, "429"/"timeout"/..., "ok" (no fault), an int
# status, or a mapping of Fault's fields (from a YAML or JSON file).
FaultSpec = Fault | str | int | Mapping[str, Any] | None


def parse_fault(spec: FaultSpec) -> Fault | None:
    """A Fault, or None for "ok"."""
    if spec is None or isinstance(spec, Fault):
        return spec
    if isinstance(spec, Mapping):
        return Fault(**{**spec, "kind": str(spec.get("kind", ""))})
    text = str(spec).strip().lower()
    return None if text == "ok" else Fault(text)


def parse_faults(specs: Sequence[FaultSpec]) -> tuple[Fault | None, ...]:
    if isinstance(specs, (str, Mapping, Fault)):  # a lone spec is a common slip for a list of one
        raise TypeError(f"faults must be a list, not {specs!r}")
    return tuple(parse_fault(s) for s in specs)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``re:...`` is a regular expression (searched); anything else a literal substring."""
    return re.compile(pattern[3:] if pattern.startswith("re:") else re.escape(pattern))


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def fill(template: str, match: re.Match[str] | None) -> str:
    """Put a match's groups into ``{0}`` (whole match), ``{1}``..., ``{name}``.

    Braces that name no group stay as they are, so a JSON reply needs no escaping.
    """
    if match is None:
        return template
    named = match.groupdict()

    def group(m: re.Match[str]) -> str:
        key = m.group(1)
        if key.isdigit() and int(key) <= match.re.groups:
            return match.group(int(key)) or ""
        if key in named:
            return named[key] or ""
        return m.group(0)

    return _PLACEHOLDER.sub(group, template)


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_text(messages: Sequence[Mapping[str, Any]], role: str) -> str:
    for message in reversed(messages):
        if message.get("role") == role:
            return text_of(message.get("content"))
    return ""


def system_text(messages: Sequence[Mapping[str, Any]]) -> str:
    # Newer OpenAI models call it "developer"; a rule on the system message should see both.
    return "\n".join(text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))


@dataclass(frozen=True)
class Rule:
    """A scripted answer for chat requests.

    ``match`` is tried on the last user message, ``model`` on the request's
    model (as the server sees it: litellm strips the ``openai/`` prefix),
    ``system`` on the system messages; each is a substring or ``re:<regex>``,
    and every one given must match. ``reply`` may use the groups of ``match``
    (``{1}``, ``{name}``, ``{0}`` for the whole match), or be a Fault to fail
    every call. Before replying, the rule's first matched calls take
    ``faults`` in order (``"ok"`` for a normal reply); ``fail_first=N`` is
    short for ``faults=[fault] * N``. ``latency_ms`` overrides the server's.
    """

    match: str | None = None
    reply: str | Fault = ""
    model: str | None = None
    system: str | None = None
    faults: Sequence[FaultSpec] = ()
    fail_first: int = 0
    fault: FaultSpec = "500"
    latency_ms: float | None = None

    def __post_init__(self) -> None:
        if self.fail_first and self.faults:
            raise ValueError("give a rule either fail_first or faults, not both")
        # Compile and parse once; frozen, so through object.__setattr__.
        object.__setattr__(self, "_patterns", {
            name: compile_pattern(value)
            for name, value in (("match", self.match), ("model", self.model), ("system", self.system))
            if value is not None
        })
        object.__setattr__(self, "_faults", parse_faults(self.faults) or (parse_fault(self.fault),) * self.fail_first)

    @property
    def fault_sequence(self) -> tuple[Fault | None, ...]:
        return self._faults  # type: ignore[attr-defined,no-any-return]

    def reply_for(self, request: Mapping[str, Any]) -> str | Fault | None:
        """This rule's reply to a chat request, or None when the rule does not apply."""
        messages = request.get("messages") or []
        subjects = {"match": last_text(messages, "user"), "model": str(request.get("model", "")),
                    "system": system_text(messages)}
        found = {name: pattern.search(subjects[name]) for name, pattern in self._patterns.items()}  # type: ignore[attr-defined]
        if not all(found.values()):
            return None
        return self.reply if isinstance(self.reply, Fault) else fill(self.reply, found.get("match"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown rule key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        reply = data.get("reply", "")
        if isinstance(reply, Mapping):  # {fault: "429", retry_after: 2} in a file fails every call
            reply = parse_fault({("kind" if key == "fault" else key): value for key, value in reply.items()})
        return cls(**{**data, "reply": reply})


# A hook with full control over chat replies: the request body in, a reply or a Fault out;
# None lets the rules answer.
Responder = Callable[[dict], str | Fault | None]
