"""What rules may ask about the project beyond the file they check.

Only the files being linted are parsed in full. Other prompts and retrieval
configs are indexed by a quick scan for their top-level ``id:`` and parsed
only when a rule needs them, so a five-file commit in a thousand-file
repository reads five files plus the ones they refer to.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any

from promptops.discover import discover
from promptops.loader import Loaded, Loader
from promptops.models import ModelCatalog
from promptops.specs import ProjectConfig, PromptSpec, RetrievalSpec, kind_of
from promptops.templating import RenderLimits

_TOP_LEVEL_ID = re.compile(r"^id:[ \t]*(?P<q>['\"]?)(?P<id>[^'\"#\s]+)(?P=q)[ \t]*(?:#.*)?$", re.MULTILINE)


class Project:
    def __init__(self, config: ProjectConfig, loader: Loader, linted: dict[Path, Loaded]) -> None:
        self.config = config
        self.root = config.root
        self.loader = loader
        self.linted = linted
        self.models = ModelCatalog(config.section("pricing"))
        self.render_limits = RenderLimits.from_config(config.section("lint").get("render_limits") or {})
        self._loaded: dict[Path, Loaded] = {path.resolve(): item for path, item in linted.items()}
        self._messages: dict[Path, list[ParsedMessage]] = {}

    def messages(self, spec: PromptSpec) -> list["ParsedMessage"]:
        """The prompt's message templates, parsed once per run."""
        key = spec.source.path.resolve()
        if key not in self._messages:
            self._messages[key] = [ParsedMessage(spec, i) for i in range(len(spec.messages))]
        return self._messages[key]

    def load(self, path: Path) -> Loaded:
        key = path.resolve()
        if key not in self._loaded:
            self._loaded[key] = self.loader.load(path)
        return self._loaded[key]

    @cached_property
    def _files(self) -> list[Path]:
        exclude = self.config.section("paths").get("exclude") or []
        include = [self.root / p for p in self.config.section("paths").get("include") or []]
        return discover(self.root, include, exclude)

    @cached_property
    def id_index(self) -> dict[str, dict[str, list[Path]]]:
        """kind -> id -> files that seem to define it (None id: the scan could not tell)."""
        index: dict[str, dict[str, list[Path]]] = {"prompt": {}, "retrieval": {}}
        files = {path.resolve() for path in self._files} | set(self._loaded)
        for path in sorted(files):
            kind = kind_of(path)
            if kind in index:
                index[kind].setdefault(self._quick_id(path), []).append(path)
        return index

    def _quick_id(self, path: Path) -> Any:
        loaded = self._loaded.get(path.resolve())
        if loaded is not None:
            return getattr(loaded.spec, "id", None)
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                match = _TOP_LEVEL_ID.search(handle.read(1_000_000))
        except OSError:
            return None
        return match.group("id") if match else None

    def _defining(self, kind: str, spec_id: str) -> list[Loaded]:
        """Fully loaded files that define ``spec_id``, confirming the quick scan."""
        index = self.id_index[kind]
        candidates = index.get(spec_id, []) + index.get(None, [])  # type: ignore[arg-type]
        found = []
        for path in candidates:
            loaded = self.load(path)
            if loaded.spec is not None and getattr(loaded.spec, "id", None) == spec_id:
                found.append(loaded)
        return found

    def prompt(self, prompt_id: str) -> PromptSpec | None:
        found = self._defining("prompt", prompt_id)
        return found[0].spec if found else None  # type: ignore[return-value]

    def retrieval(self, config_id: str) -> RetrievalSpec | None:
        found = self._defining("retrieval", config_id)
        return found[0].spec if found else None  # type: ignore[return-value]

    def others_defining(self, kind: str, spec_id: str, path: Path) -> list[Loaded]:
        return [item for item in self._defining(kind, spec_id) if item.source.path.resolve() != path.resolve()]

    def suites_for(self, prompt_id: str) -> list[Any]:
        """Eval suites among the linted files that test ``prompt_id``."""
        return [
            item.spec for item in self.linted.values()
            if item.kind == "eval" and item.spec is not None and item.spec.prompt == prompt_id
        ]


class ParsedMessage:
    """One message template, parsed once for every rule that needs it."""

    def __init__(self, spec: PromptSpec, index: int) -> None:
        from promptops.templating import TemplateError, parse

        self.spec = spec
        self.index = index
        self.role = spec.messages[index].role
        self.source_text = spec.messages[index].content
        self.tree: Any = None
        self.error: tuple[int, str] | None = None
        try:
            self.tree = parse(self.source_text)
        except TemplateError as exc:
            self.error = (getattr(exc, "lineno", None) or 1, getattr(exc, "message", None) or str(exc))
        except RecursionError:
            self.error = (1, "the template nests too deeply to parse")

    @property
    def path(self) -> tuple[Any, ...]:
        return ("messages", self.index, "content")

    def file_position(self, template_line: int) -> tuple[int, int]:
        """Where line ``template_line`` of this template sits in the YAML file."""
        source = self.spec.source
        line, col = source.where(self.path)
        lines = source.text.splitlines()
        indicator = lines[line - 1][col - 1 : col] if 0 < line <= len(lines) else ""
        file_line = line + template_line if indicator in ("|", ">") else line + template_line - 1
        if file_line != line and 0 < file_line <= len(lines):
            text = lines[file_line - 1]
            col = len(text) - len(text.lstrip()) + 1
        return file_line, col
