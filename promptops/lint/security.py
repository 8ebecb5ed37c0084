"""PO6xx: secrets in committed files, injection-prone templates, sandbox escapes."""

from __future__ import annotations

import re
from typing import Iterator

from promptops.findings import Severity
from promptops.lint.project import Project
from promptops.lint.registry import Hit, rule
from promptops.loader import Loaded
from promptops.specs import PromptSpec
from promptops.templating import forbidden_attribute

_SECRET_SHAPES = {
    "anthropic": ("Anthropic API key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    "openai": ("OpenAI API key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    "aws": ("AWS access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github": ("GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"),
    "google": ("Google API key", r"\bAIza[0-9A-Za-z_-]{35}"),
    "slack": ("Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "huggingface": ("Hugging Face token", r"\bhf_[A-Za-z0-9]{30,}"),
    "private_key": ("private key", r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "assignment": (
        "credential assignment",
        r"(?i:\b(?:api[_-]?key|secret|access[_-]?token|auth[_-]?token|password)\b[\"']?\s*[:=]\s*[\"']?)"
        r"(?P<value>[A-Za-z0-9_\-/+]{16,})",
    ),
}
# One alternation, so each file is scanned once whatever the number of shapes.
SECRETS = re.compile("|".join(f"(?P<{name}>{pattern})" for name, (_, pattern) in _SECRET_SHAPES.items()))
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
    for match in SECRETS.finditer(text):
        shape = match.lastgroup or ""
        label = _SECRET_SHAPES[shape][0] if shape in _SECRET_SHAPES else "secret"
        group = "value" if shape == "assignment" else shape
        start = match.start(group)
        line = text.count("\n", 0, start) + 1
        col = start - (text.rfind("\n", 0, start) + 1) + 1
        yield Hit(loaded.source, line, col, f"possible {label} {mask(match.group(group))} committed in the file")


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
        if message.role != "system":
            continue
        for name, template_line in message.variables.items():
            line, col = message.file_position(template_line)
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
        for name, template_line in message.facts.attributes:
            if forbidden_attribute(name):
                line, col = message.file_position(template_line)
                yield Hit(spec.source, line, col, f"messages[{message.index}] accesses '{name}', which the sandbox forbids")
