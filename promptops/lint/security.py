"""PO6xx: secrets in committed files, injection-prone templates, sandbox escapes."""

from __future__ import annotations

import re
from typing import Iterator

from promptops.findings import Severity
from promptops.lint.project import Project
from promptops.lint.registry import Hit, rule
from promptops.lint.templates import first_line
from promptops.loader import Loaded
from promptops.specs import PromptSpec
from promptops.templating import attribute_names, variables_used

SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern))
    for label, pattern in (
        ("Anthropic API key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
        ("OpenAI API key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
        ("AWS access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
        ("GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"),
        ("Google API key", r"\bAIza[0-9A-Za-z_-]{35}"),
        ("Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
        ("Hugging Face token", r"\bhf_[A-Za-z0-9]{30,}"),
        ("private key", r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
        ("credential assignment",
         r"(?i)\b(?:api[_-]?key|secret|access[_-]?token|auth[_-]?token|password)\b[\"']?\s*[:=]\s*[\"']?"
         r"(?P<value>[A-Za-z0-9_\-/+]{16,})"),
    )
)
_ESCAPE_NAMES = frozenset(
    {"mro", "func_globals", "f_globals", "f_locals", "f_back", "gi_frame", "gi_code", "cr_frame", "cr_code",
     "ag_frame", "tb_frame", "co_code", "im_func", "func_code"}
)


def mask(secret: str) -> str:
    """Enough to find it, never enough to use it."""
    return f"{secret[:4]}…({len(secret)} chars)"


@rule("PO601", "secret-in-file", "file")
def secret_in_file(loaded: Loaded, project: Project) -> Iterator[Hit]:
    """A string that looks like an API key, token or private key is committed
    in a prompt, retrieval, eval or config file (comments included). Whatever
    sits in a prompt is sent to the model provider and lands in logs and
    caches. The finding shows only the first characters. Rotate the key, then
    pass secrets through the environment.

    Fails:   content: "Use key sk-proj-Ab3... to call the tool"
    Passes:  no credentials in files; litellm reads OPENAI_API_KEY from the environment.
    """
    text = loaded.source.text
    reported: set[int] = set()
    for label, pattern in SECRET_PATTERNS:
        for match in pattern.finditer(text):
            start = match.start("value") if "value" in pattern.groupindex else match.start()
            if start in reported or any(abs(start - r) < 8 for r in reported):
                continue
            reported.add(start)
            secret = match.group("value") if "value" in pattern.groupindex else match.group()
            line = text.count("\n", 0, start) + 1
            col = start - (text.rfind("\n", 0, start) + 1) + 1
            yield Hit(loaded.source, line, col, f"possible {label} {mask(secret)} committed in the file")


@rule("PO602", "system-interpolation", "prompt", Severity.WARNING)
def system_interpolation(spec: PromptSpec, project: Project) -> Iterator[Hit]:
    """A variable is interpolated into a system message. Whoever controls that
    value (a user, a retrieved document) can rewrite the model's instructions:
    prompt injection. Keep system messages static and put variable content in
    user messages, or suppress the warning where the value is trusted.

    Fails:   {role: system, content: "You help {{ customer_name }}. Be concise."}
    Passes:  {role: user, content: "Customer: {{ customer_name }}"}
    """
    for message in project.messages(spec):
        if message.role != "system" or message.tree is None:
            continue
        for name in sorted(variables_used(message.tree)):
            line, col = message.file_position(first_line(message.tree, name))
            yield Hit(spec.source, line, col, f"variable '{name}' is interpolated into a system message")


@rule("PO603", "sandbox-escape", "prompt")
def sandbox_escape(spec: PromptSpec, project: Project) -> Iterator[Hit]:
    """A template reaches for private or interpreter attributes (__class__,
    __globals__, mro, ...): the shape of a sandbox escape. The sandbox refuses
    them at render time; the file should never have been written that way.

    Fails:   "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    Passes:  "{{ question }}"
    """
    for message in project.messages(spec):
        if message.tree is None:
            continue
        for name, template_line in attribute_names(message.tree):
            if name.startswith("_") or name in _ESCAPE_NAMES:
                line, col = message.file_position(template_line)
                yield Hit(spec.source, line, col, f"messages[{message.index}] accesses '{name}', which the sandbox forbids")
