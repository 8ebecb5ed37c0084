"""Typed specs built from validated files; each remembers where its values came from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from promptops.yamlparse import JsonPath, Positions

PROMPT_SUFFIX = ".prompt.yaml"
RETRIEVAL_SUFFIX = ".retrieval.yaml"
EVAL_SUFFIX = ".eval.yaml"
CONFIG_NAME = "promptops.yaml"
DEFAULT_QUERY_INPUT = "question"  # a case's retrieval query when the prompt's retrieval.query names none
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

    @property
    def retrieval_query(self) -> str | None:
        """The input ``retrieval.query`` names; None when it names none."""
        named = (self.raw.get("retrieval") or {}).get("query")
        return named if isinstance(named, str) and named else None

    def query_input(self, variables: Mapping[str, Any]) -> str | None:
        """Which of a case's inputs is its retrieval query: the one ``retrieval.query`` names, else ``question``,
        else (``retrieval.query`` unset) the first text input other than ``retrieval.into``; None when none is.
        The eval's retrieval queries with it and the cost estimate prices its embedding: one choice for both."""
        for name in (self.retrieval_query, DEFAULT_QUERY_INPUT):
            if name and isinstance(variables.get(name), str):
                return name
        if self.retrieval_query:
            return None
        return next((name for name, value in variables.items()
                     if name != self.retrieval_into and isinstance(value, str)), None)


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

    Values are kept as written (a bound of 3000 prints as "3,000", not "3,000.0"),
    and the types hint what the schema lets through; for an assertion built from
    anything else, ``validate`` of its type (promptops.evals.assertions) checks
    them. ``raw`` is the mapping it was built from: a suite's content hash reads it.
    """

    type: str
    raw: Mapping[str, Any] = field(repr=False)
    value: Any = None  # text, a number, a list of them, or (equals) any JSON value
    has_value: bool = False  # a value: null is written, and is not "no value"
    weight: float = 1
    threshold: float | None = None
    min: float | None = None
    max: float | None = None
    schema: dict[str, Any] | None = None
    model: str | None = None
    context: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Assertion:
        return cls(type=data.get("type"), raw=data, value=data.get("value"), has_value="value" in data,  # type: ignore[arg-type]
                   weight=data.get("weight", 1), threshold=data.get("threshold"), min=data.get("min"),
                   max=data.get("max"), schema=data.get("schema"), model=data.get("model"),
                   context=data.get("context"))


@dataclass(frozen=True)
class EvalCase:
    id: str
    vars: dict[str, Any]
    expected: Any
    asserts: tuple[Assertion, ...]
    origin: Source
    path: JsonPath  # where the case sits in its origin (a JSON path, or (line,) in a dataset)
    threshold: float | None = None
    expected_sources: tuple[str, ...] = ()  # documents retrieval should find: ids, paths or substrings of them


@dataclass(frozen=True)
class EvalSuiteSpec:
    prompt: str
    cases: tuple[EvalCase, ...]
    default_assert: tuple[Assertion, ...]
    gates: Gates
    raw: dict[str, Any]
    source: Source
    dataset: str | None = None
    repeat: int | None = None  # None: eval.repeat in promptops.yaml, else 1
    confirm: int | None = None  # None: eval.confirm, else the default
    threshold: float = 1.0
    dataset_readable: bool = True  # False: the dataset is missing or unreadable (already a finding)
    # retrieval.judge: context_precision and/or context_recall, judged on the retrieved passages (opt-in: they cost)
    context_judged: tuple[str, ...] = ()
    context_judge_model: str | None = None  # retrieval.model; None: the project's judge

    @property
    def name(self) -> str:
        """Suites are named by file: several suites may test one prompt."""
        return self.source.display


@dataclass(frozen=True)
class PathSettings:
    """paths: which files belong to the project, relative to promptops.yaml."""

    include: tuple[str, ...] = ()  # folders to search (none: the whole project)
    exclude: tuple[str, ...] = ()  # glob patterns to skip


@dataclass(frozen=True)
class ModelDefaults:
    """defaults: the models used where a file names none."""

    model: str | None = None
    judge: str | None = None  # grades llm_rubric, groundedness and answer_relevance
    embedding: str | None = None  # embeds for the similar assertion


@dataclass(frozen=True)
class EvalSettings:
    """eval: how suites run (values as written, defaults where none is)."""

    concurrency: int = 8
    timeout_s: float = 60.0
    retries: int = 4
    cache: str | None = None  # the result cache's path, relative to promptops.yaml
    repeat: int | None = None
    max_cost_usd: float | None = None
    confirm: int | None = None


GATE_NAMES = ("pass_rate", "max_pass_rate_drop", "max_cost_increase_pct", "max_p95_latency_ms", "min_recall_at_k",
              "max_recall_drop", "min_context_precision", "max_context_precision_drop", "min_context_recall",
              "max_context_recall_drop")


@dataclass(frozen=True)
class Gates:
    """Limits a change must meet, promptops.yaml's or a suite's; None: not checked."""

    pass_rate: float | None = None
    max_pass_rate_drop: float | None = None
    max_cost_increase_pct: float | None = None
    max_p95_latency_ms: float | None = None
    min_recall_at_k: float | None = None  # mean recall@k of the cases that name expected_sources, at head
    max_recall_drop: float | None = None  # largest fall of that mean from base to head
    # judged (a suite's retrieval.judge): a floor on the head's mean, and the largest fall beyond noise
    min_context_precision: float | None = None
    max_context_precision_drop: float | None = None
    min_context_recall: float | None = None
    max_context_recall_drop: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Gates:
        return cls(**{name: float(data[name]) for name in GATE_NAMES if data.get(name) is not None})

    def over(self, other: Gates) -> Gates:
        """These gates where they are set, ``other``'s elsewhere (a suite's over the project's)."""
        return replace(other, **self.limits())

    def limits(self) -> dict[str, float]:
        """The gates that are set, by name."""
        return {name: value for name in GATE_NAMES if (value := getattr(self, name)) is not None}


@dataclass(frozen=True)
class ProjectGates(Gates):
    """gates: in promptops.yaml, also what a gate that fails on the base as well does (fail or warn)."""

    preexisting: str = "fail"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProjectGates:
        return cls(**Gates.from_dict(data).limits(), preexisting=str(data.get("preexisting", "fail")))


@dataclass(frozen=True)
class RenderLimitSettings:
    """lint.render_limits: bounds on rendering a template, each lowering its default (None: the default)."""

    max_output_chars: int | None = None
    max_loop_iterations: int | None = None
    timeout_s: float | None = None


@dataclass(frozen=True)
class LintSettings:
    """lint: severities by rule, ignored codes by path pattern, and render limits."""

    rules: Mapping[str, str | Literal[False]] = field(default_factory=dict)  # False: off (YAML 1.1's reading of off)
    per_file_ignores: Mapping[str, list[str]] = field(default_factory=dict)
    render_limits: RenderLimitSettings = RenderLimitSettings()


DEFAULT_ENVIRONMENTS = ("dev", "staging", "prod")


@dataclass(frozen=True)
class ProjectConfig:
    """promptops.yaml, its sections typed once, here; ``raw`` is the file as written (``section`` reads it)."""

    root: Path
    raw: dict[str, Any]
    source: Source | None = None
    paths: PathSettings = field(init=False)
    defaults: ModelDefaults = field(init=False)
    eval: EvalSettings = field(init=False)
    gates: ProjectGates = field(init=False)
    lint: LintSettings = field(init=False)
    environments: list[str] = field(init=False)  # promotion order
    pricing: dict[str, dict[str, Any]] = field(init=False)  # price overrides by model, as written (for models.py)
    calls_per_day: dict[str, float] = field(init=False)  # usage: expected production traffic by prompt id

    def __post_init__(self) -> None:
        paths, eval_, lint = self.section("paths"), self.section("eval"), self.section("lint")
        built = {
            "paths": PathSettings(tuple(paths.get("include") or ()), tuple(paths.get("exclude") or ())),
            "defaults": ModelDefaults(**self.section("defaults")),
            "eval": EvalSettings(
                concurrency=int(eval_.get("concurrency", 8)), timeout_s=float(eval_.get("timeout_s", 60)),
                retries=int(eval_.get("retries", 4)), cache=eval_.get("cache"), repeat=eval_.get("repeat"),
                max_cost_usd=eval_.get("max_cost_usd"), confirm=eval_.get("confirm")),
            "gates": ProjectGates.from_dict(self.section("gates")),
            "lint": LintSettings(dict(lint.get("rules") or {}), dict(lint.get("per_file_ignores") or {}),
                                 RenderLimitSettings(**(lint.get("render_limits") or {}))),
            "environments": list(self.raw.get("environments") or DEFAULT_ENVIRONMENTS),
            "pricing": self.section("pricing"),
            "calls_per_day": {prompt_id: usage["calls_per_day"] for prompt_id, usage in self.section("usage").items()},
        }
        for name, value in built.items():
            object.__setattr__(self, name, value)  # frozen: set once, here

    def section(self, name: str) -> dict[str, Any]:
        """A section as written ({} when absent): for what hashes or merges the file, not for settings."""
        value = self.raw.get(name)
        return value if isinstance(value, dict) else {}
