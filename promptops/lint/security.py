"""PO6xx: secrets in committed files, injection-prone templates, sandbox escapes, and model parameters or
model names that would let a file choose where requests go, what they cost, or what the model answered."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from promptops.findings import Severity
from promptops.lint.project import LintProject
from promptops.lint.registry import Hit, hit, rule
from promptops.loader import Loaded
from promptops.modelparams import endpoint_in_model, refused_extra
from promptops.specs import PromptSpec
from promptops.templating import forbidden_attribute
from promptops.yamlparse import JsonPath

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
def secret_in_file(loaded: Loaded, project: LintProject) -> Iterator[Hit]:
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
def system_interpolation(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
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
def sandbox_escape(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
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
                yield Hit(spec.source, line, col,
                          f"messages[{message.index}] accesses '{name}', which the sandbox forbids")


@rule("PO604", "refused-model-param", "prompt")
def refused_model_param(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
    """model.params.extra sets a parameter promptops never passes to litellm.
    extra is an allowlist: response_format, logit_bias, logprobs,
    top_logprobs, top_k, reasoning_effort and user pass; every other key is
    refused, known to litellm or not. Among them: where the request and the
    API key go (api_base, base_url, api_version, extra_headers), credentials
    (api_key, aws_*, vertex_*), prices (input_cost_per_token), callbacks and
    logging (success_callback, metadata), a made-up answer with no model call
    (mock_response), and what promptops sets itself (timeout, num_retries,
    max_tokens). The eval suites of such a prompt are not run and its calls
    are never sent, however the finding is suppressed; endpoints come only from
    --api-base or PROMPTOPS_API_BASE, set by whoever runs the check.

    Fails:   params: {temperature: 0, extra: {base_url: "https://example.net/v1"}}
    Passes:  params: {temperature: 0, extra: {response_format: {type: json_object}}}
    """
    extra = spec.params.get("extra")
    for key, why in refused_extra(spec.params):
        path: JsonPath = ("model", "params", "extra", key) if isinstance(extra, dict) and key in extra \
            else ("model", "params", key)
        yield hit(spec.source, path, f"model.params.extra: {why}", key=True)


@rule("PO605", "model-endpoint", "file")
def model_endpoint(loaded: Loaded, project: LintProject) -> Iterator[Hit]:
    """A model name holds a URL. For some providers litellm sends the request
    to a URL in the model name (oobabooga/http://..., huggingface/https://...),
    even over --api-base: the file would choose where the calls go and who
    answers them. Checked in prompts (model.name), promptops.yaml (defaults)
    and eval suites (an assertion's judge or embedding model); such calls are
    never sent, however the finding is suppressed.

    Fails:   model: {name: "oobabooga/http://example.net:5000"}
    Passes:  model: {name: openai/gpt-4o-mini}   (and --api-base http://example.net:5000/v1 in the workflow)
    """
    for path, name in _model_names(loaded.kind, loaded.data):
        problem = endpoint_in_model(name)
        if problem:
            yield hit(loaded.source, path, problem)


def _model_names(kind: str, data: Any) -> Iterator[tuple[JsonPath, str]]:
    """Where a file of ``kind`` names a model that promptops may call, and the name."""
    if not isinstance(data, dict):
        return
    if kind == "prompt" and isinstance(data.get("model"), dict):
        yield from _strings([(("model", "name"), data["model"].get("name"))])
    elif kind == "config" and isinstance(data.get("defaults"), dict):
        yield from _strings([(("defaults", key), value) for key, value in data["defaults"].items()])
    elif kind == "eval":
        assertions: list[tuple[JsonPath, Any]] = []
        for index, item in enumerate(_list(data.get("default_assert"))):
            assertions.append((("default_assert", index), item))
        for case_index, case in enumerate(_list(data.get("cases"))):
            checks = _list(case.get("assert")) if isinstance(case, dict) else []
            assertions += [(("cases", case_index, "assert", index), item) for index, item in enumerate(checks)]
        yield from _strings([((*path, "model"), item.get("model")) for path, item in assertions
                             if isinstance(item, dict)])


def _strings(pairs: list[tuple[JsonPath, Any]]) -> Iterator[tuple[JsonPath, str]]:
    return ((path, value) for path, value in pairs if isinstance(value, str))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
