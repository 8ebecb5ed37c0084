"""Typed specs built from validated files; each remembers where its values came from."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from promptops.yamlparse import JsonPath, Positions

PROMPT_SUFFIX = ".prompt.yaml"
RETRIEVAL_SUFFIX = ".retrieval.yaml"
EVAL_SUFFIX = ".eval.yaml"
CONFIG_NAME = "promptops.yaml"
SUFFIXES = {PROMPT_SUFFIX: "prompt", RETRIEVAL_SUFFIX: "retrieval", EVAL_SUFFIX: "eval"}


def kind_of(path: Path | str) -> str | None:
    """The kind of spec a file holds, from its name alone."""
    name = Path(path).name
    if name == CONFIG_NAME:
        return "config"
    for suffix, kind in SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return kind
    return None


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_version(value: Any) -> str:
    """Hash of parsed content: comments, key order and layout outside strings don't count."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Source:
    """A file as loaded: its path, its display name and where each value sits."""

    path: Path
    display: str
    positions: Positions = field(default_factory=Positions, compare=False, repr=False)
    text: str = field(default="", compare=False, repr=False)

    def where(self, path: JsonPath = (), *, key: bool = False) -> tuple[int, int]:
        return self.positions.of(path, key=key)

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    name: str | None = None


@dataclass(frozen=True)
class PromptSpec:
    id: str
    model: str
    params: dict[str, Any]
    messages: tuple[Message, ...]
    inputs: dict[str, Any]
    raw: dict[str, Any]
    source: Source
    description: str = ""
    retrieval_config: str | None = None
    retrieval_into: str | None = None
    output: dict[str, Any] = field(default_factory=lambda: {"format": "text"})
    budget: dict[str, Any] = field(default_factory=dict)

    @cached_property  # asked once per case and call: hash the file's content once
    def version(self) -> str:
        return content_version(self.raw)

    @property
    def declared_inputs(self) -> dict[str, Any]:
        return dict(self.inputs.get("properties") or {})

    @property
    def required_inputs(self) -> list[str]:
        return list(self.inputs.get("required") or [])


@dataclass(frozen=True)
class RetrievalSpec:
    id: str
    embedding_model: str
    chunk_size: int
    chunk_overlap: int
    chunk_unit: str
    top_k: int
    raw: dict[str, Any]
    source: Source
    reranker_model: str | None = None
    reranker_top_n: int | None = None
    index_name: str | None = None

    @property
    def chunks_returned(self) -> int:
        """What the prompt receives: the reranker's top_n, else the retriever's top_k."""
        return self.reranker_top_n if self.reranker_top_n is not None else self.top_k

    @cached_property
    def version(self) -> str:
        return content_version(self.raw)


@dataclass(frozen=True)
class Assertion:
    """One assertion as written in a suite, built once by the loader.

    Values are kept as written (a bound of 3000 prints as "3,000", not "3,000.0");
    ``validate`` of the assertion's type says whether they make sense. ``raw`` is
    the mapping it was built from: a suite's content hash reads it.
    """

    type: str
    raw: Mapping[str, Any] = field(repr=False)
    value: Any = None
    has_value: bool = False  # a value: null is written, and is not "no value"
    weight: Any = 1
    threshold: Any = None
    min: Any = None
    max: Any = None
    schema: Any = None
    model: str | None = None
    context: str | None = None
    description: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Assertion:
        return cls(type=data.get("type"), raw=data, value=data.get("value"), has_value="value" in data,  # type: ignore[arg-type]
                   weight=data.get("weight", 1), threshold=data.get("threshold"), min=data.get("min"),
                   max=data.get("max"), schema=data.get("schema"), model=data.get("model"),
                   context=data.get("context"), description=data.get("description"))


@dataclass(frozen=True)
class EvalCase:
    id: str
    vars: dict[str, Any]
    expected: Any
    asserts: tuple[Assertion, ...]
    origin: Source
    path: JsonPath  # where the case sits in its origin (a JSON path, or (line,) in a dataset)
    threshold: float | None = None


@dataclass(frozen=True)
class EvalSuiteSpec:
    prompt: str
    cases: tuple[EvalCase, ...]
    default_assert: tuple[Assertion, ...]
    gates: dict[str, Any]
    raw: dict[str, Any]
    source: Source
    dataset: str | None = None
    repeat: int = 1
    threshold: float = 1.0
    dataset_readable: bool = True  # False: the dataset is missing or unreadable (already a finding)

    @property
    def name(self) -> str:
        """Suites are named by file: several suites may test one prompt."""
        return self.source.display


@dataclass(frozen=True)
class ProjectConfig:
    root: Path
    raw: dict[str, Any]
    source: Source | None = None

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def environments(self) -> list[str]:
        return list(self.raw.get("environments") or ["dev", "staging", "prod"])
