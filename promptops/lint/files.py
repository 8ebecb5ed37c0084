"""PO1xx: files that cannot be read, parsed or validated, and identities that clash."""

from __future__ import annotations

from collections.abc import Iterator

from promptops.codes import (
    DUPLICATE_KEY,
    INVALID_VALUE,
    MISSING_KEY,
    NOT_A_MAPPING,
    TOO_COMPLEX,
    UNKNOWN_KEY,
    UNREADABLE_FILE,
    UNSAFE_TAG,
    WRONG_TYPE,
    YAML_SYNTAX,
)
from promptops.lint.project import LintProject
from promptops.lint.registry import Hit, hit, loader_rule, rule
from promptops.specs import PromptSpec, RetrievalSpec

loader_rule(UNREADABLE_FILE, "unreadable-file", """
    The file cannot be read as text: it is binary, not UTF-8, larger than 1 MB,
    unreadable, or a symlink that points outside the repository (never followed).

    Fails: a prompt saved as UTF-16, or `evil.prompt.yaml -> /etc/passwd`.
    Passes: a UTF-8 text file inside the repository.
""")
loader_rule(YAML_SYNTAX, "yaml-syntax", """
    The file is not valid YAML: an unclosed bracket or quote, a tab used for
    indentation, a bad indent, or several documents (---) in one file.

    Fails:   model: {name: openai/gpt-4o-mini
    Passes:  model: {name: openai/gpt-4o-mini}
""")
loader_rule(DUPLICATE_KEY, "duplicate-key", """
    A mapping defines the same key twice. YAML parsers silently keep the last
    one, so half of what you wrote is ignored.

    Fails:   model: {name: a}  followed later by  model: {name: b}
    Passes:  one model: key.
""")
loader_rule(UNSAFE_TAG, "unsafe-tag", """
    The file uses a YAML tag such as !!python/object or a custom !Tag. Only plain
    values are allowed; tags are never constructed or executed.

    Fails:   content: !!python/object/apply:os.system ["id"]
    Passes:  content: "plain text"
""")
loader_rule(TOO_COMPLEX, "too-complex", """
    The document nests deeper than 64 levels, expands (through anchors and
    aliases) to more than 200,000 values (the shape of an alias bomb), or
    holds a number over 10,000 characters long (YAML 1.1 reads 1:1:1... as
    one base-60 integer, in time quadratic in its length).

    Fails:   a: &a [x, x, x]  b: &b [*a, *a, *a]  ... nine levels deep
    Passes:  ordinary anchors reused a few times.
""")
loader_rule(NOT_A_MAPPING, "not-a-mapping", """
    The file is empty or its top level is a list or a scalar; every promptops
    file is a mapping of keys.

    Fails:   - id: support.answer
    Passes:  id: support.answer
""")
loader_rule(UNKNOWN_KEY, "unknown-key", """
    A key that the schema does not define, usually a typo; the message suggests
    the closest known key. Unknown keys are errors so that a misspelt setting
    never silently does nothing.

    Fails:   model: {name: openai/gpt-4o-mini, parms: {temperature: 0}}
    Passes:  model: {name: openai/gpt-4o-mini, params: {temperature: 0}}
""")
loader_rule(MISSING_KEY, "missing-key", """
    A required key is absent (a prompt needs id, model and messages; an eval
    suite needs prompt and cases or a dataset).

    Fails:   a prompt without messages:
    Passes:  messages: [{role: user, content: "{{ question }}"}]
""")
loader_rule(WRONG_TYPE, "wrong-type", """
    A value has the wrong type, for example a string where a number belongs.

    Fails:   params: {max_tokens: "400"}
    Passes:  params: {max_tokens: 400}
""")
loader_rule(INVALID_VALUE, "invalid-value", """
    A value has the right type but is out of range or not an allowed choice
    (temperature above 2, an unknown message role, an id with capitals).

    Fails:   role: narrator
    Passes:  role: system
""")


@rule("PO120", "duplicate-id", "prompt")
def duplicate_prompt_id(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
    """Two prompt files define the same id. Eval suites, usage figures and
    environments refer to prompts by id, so the id must be unique in the project.

    Fails:   answer.prompt.yaml and answer-v2.prompt.yaml both say  id: support.answer
    Passes:  id: support.answer  and  id: support.answer-v2
    """
    yield from _duplicates("prompt", spec, project)


@rule("PO121", "duplicate-retrieval-id", "retrieval")
def duplicate_retrieval_id(spec: RetrievalSpec, project: LintProject) -> Iterator[Hit]:
    """Two retrieval configs define the same id, so prompts cannot tell which
    one `retrieval.config` means.

    Fails:   kb.retrieval.yaml and kb-new.retrieval.yaml both say  id: support_kb
    Passes:  distinct ids.
    """
    yield from _duplicates("retrieval", spec, project)


def _duplicates(kind: str, spec: PromptSpec | RetrievalSpec, project: LintProject) -> Iterator[Hit]:
    others = project.others_defining(kind, spec.id, spec.source.path)
    if others:
        where = ", ".join(f"{o.source.display}:{o.source.where(('id',))[0]}" for o in others)
        yield hit(spec.source, ("id",), f"{kind} id '{spec.id}' is also defined in {where}")
