"""What rules may ask about the project beyond the file they check.

Only the files being linted are parsed up front. To find which other file
defines a prompt or retrieval id, ``git grep`` (or, outside git, a plain text
scan) picks the files that mention the id, and only those are parsed, so a
five-file commit in a thousand-file repository parses five files plus the
few they refer to.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any

from promptops import git
from promptops.discover import allowed, discover, excluded
from promptops.loader import Loaded, Loader
from promptops.models import ModelCatalog
from promptops.specs import (
    EVAL_SUFFIX,
    PROMPT_SUFFIX,
    RETRIEVAL_SUFFIX,
    EvalSuiteSpec,
    ProjectConfig,
    PromptSpec,
    RetrievalSpec,
    kind_of,
)
from promptops.templating import RenderLimits, TemplateFacts

_SUFFIX = {"prompt": PROMPT_SUFFIX, "retrieval": RETRIEVAL_SUFFIX, "eval": EVAL_SUFFIX}
_TOP_LEVEL_ID = re.compile(r"^id:[ \t]*(?P<q>['\"]?)(?P<id>[^'\"#\s]+)(?P=q)[ \t]*(?:#.*)?$", re.MULTILINE)


def _key(path: Path) -> str:
    return os.path.normpath(os.path.abspath(path))


class LintProject:
    def __init__(
        self, config: ProjectConfig, loader: Loader, linted: dict[Path, Loaded], whole_project: bool = False
    ) -> None:
        self.config = config
        self.root = config.root
        self.loader = loader
        self.linted = linted
        self.models = ModelCatalog(config.pricing)
        self.render_limits = RenderLimits.from_config(config.lint.render_limits)
        self._loaded: dict[str, Loaded] = {_key(path): item for path, item in linted.items()}
        self._messages: dict[Path, list[ParsedMessage]] = {}
        self.whole_project = whole_project
        self._candidates: dict[tuple[str, str], list[str]] = {}
        if whole_project:  # the linted files are all there is: no second search
            self.__dict__["_files"] = list(linted)

    def messages(self, spec: PromptSpec) -> list[ParsedMessage]:
        """The prompt's message templates, parsed once per run."""
        key = spec.source.path
        if key not in self._messages:
            self._messages[key] = [ParsedMessage(spec, i) for i in range(len(spec.messages))]
        return self._messages[key]

    def load(self, path: Path) -> Loaded:
        key = _key(path)
        if key not in self._loaded:
            self._loaded[key] = self.loader.load(path)
        return self._loaded[key]

    @cached_property
    def _files(self) -> list[Path]:
        exclude = self.config.paths.exclude
        include = [self.root / p for p in self.config.paths.include]
        return discover(self.root, include, exclude)

    @cached_property
    def _texts(self) -> dict[str, dict[str, str]]:
        """kind -> file -> text, for every prompt, retrieval and eval file of the project."""
        texts: dict[str, dict[str, str]] = {"prompt": {}, "retrieval": {}, "eval": {}}
        for key in sorted({_key(p) for p in self._files} | set(self._loaded)):
            kind = kind_of(key)
            if kind in texts:
                texts[kind][key] = self._text(key)
        return texts

    def _text(self, key: str) -> str:
        loaded = self._loaded.get(key)
        if loaded is not None:
            return loaded.source.text
        try:
            with open(key, encoding="utf-8", errors="replace") as handle:
                return handle.read(1_000_001)
        except OSError:
            return ""

    @cached_property
    def _by_id(self) -> dict[tuple[str, str], list[Loaded]]:
        """(kind, id) -> loaded files defining it; complete when the whole project is loaded."""
        index: dict[tuple[str, str], list[Loaded]] = {}
        for key in sorted(self._loaded):
            item = self._loaded[key]
            spec_id = getattr(item.spec, "id", None)
            if spec_id is not None:
                index.setdefault((item.kind, spec_id), []).append(item)
        return index

    def _defining(self, kind: str, spec_id: str) -> list[Loaded]:
        """Files that define ``spec_id``: those whose text mentions it, parsed to be sure."""
        if self.whole_project:
            return self._by_id.get((kind, spec_id), [])
        whole_id = re.compile(rf"(?<![\w.-]){re.escape(spec_id)}(?![\w.-])")
        candidates = self._git_candidates(kind, spec_id)
        if candidates is None:
            candidates = [key for key, text in self._texts[kind].items() if whole_id.search(text)]
        candidates = sorted(set(candidates) | {k for k, item in self._loaded.items() if item.kind == kind})
        found = []
        for key in candidates:
            loaded = self.load(Path(key))
            if loaded.spec is not None and getattr(loaded.spec, "id", None) == spec_id:
                found.append(loaded)
        return found

    def prefetch(self, wanted: set[tuple[str, str]]) -> None:
        """Find the files mentioning each (kind, id) with one ``git grep`` instead of one per id."""
        if self.whole_project or not wanted or not self._in_git:
            return
        found = self._git_grep(sorted({spec_id for _, spec_id in wanted}), sorted({kind for kind, _ in wanted}))
        if found is None:
            return
        for kind, spec_id in wanted:
            suffix = _SUFFIX[kind]
            self._candidates[(kind, spec_id)] = sorted(p for p in found.get(spec_id, ()) if p.endswith(suffix))

    def _git_candidates(self, kind: str, spec_id: str) -> list[str] | None:
        """Files of ``kind`` that mention ``spec_id``; None outside git."""
        if (kind, spec_id) in self._candidates:
            return self._candidates[(kind, spec_id)]
        if not self._in_git:
            return None
        found = self._git_grep([spec_id], [kind])
        return None if found is None else sorted(found.get(spec_id, ()))

    def _git_grep(self, ids: list[str], kinds: list[str]) -> dict[str, set[str]] | None:
        """id -> files (of the given kinds, not excluded) in which git grep finds it as a whole word."""
        matches = git.grep_words(self.root, ids, [f"*{_SUFFIX[kind]}" for kind in kinds])
        if matches is None:
            return None
        exclude = self.config.paths.exclude
        found: dict[str, set[str]] = {}
        for name, match in matches:
            path = self.root / name
            if not excluded(path, self.root, exclude) and allowed(path, self.root):
                found.setdefault(match, set()).add(_key(path))
        return found

    @cached_property
    def _in_git(self) -> bool:
        return git.toplevel(self.root) is not None

    def dependent_suites(self) -> list[Loaded]:
        """Eval suites, not linted themselves, that test a linted prompt: a change to the
        prompt (a new required input, say) can break them."""
        ids = sorted({item.spec.id for item in self._loaded.values() if isinstance(item.spec, PromptSpec)})
        if self.whole_project or not ids:
            return []
        found = self._git_grep(ids, ["eval"]) if self._in_git else None
        if found is None:
            pattern = re.compile("|".join(rf"(?<![\w.-]){re.escape(i)}(?![\w.-])" for i in ids))
            keys = {key for key, text in self._texts["eval"].items() if pattern.search(text)}
        else:
            keys = {key for files in found.values() for key in files}
        suites = [self.load(Path(key)) for key in sorted(keys - set(self._loaded))]
        return [s for s in suites if isinstance(s.spec, EvalSuiteSpec) and s.spec.prompt in ids]

    def known_ids(self, kind: str) -> list[str]:
        """Ids that files of ``kind`` appear to define (for did-you-mean hints only)."""
        return sorted({m.group("id") for text in self._texts[kind].values() for m in _TOP_LEVEL_ID.finditer(text)})

    def prompt(self, prompt_id: str) -> PromptSpec | None:
        found = self._defining("prompt", prompt_id)
        return found[0].spec if found else None  # type: ignore[return-value]

    def retrieval(self, config_id: str) -> RetrievalSpec | None:
        found = self._defining("retrieval", config_id)
        return found[0].spec if found else None  # type: ignore[return-value]

    def others_defining(self, kind: str, spec_id: str, path: Path) -> list[Loaded]:
        """Other files defining ``spec_id``; a symlink to this file is this file."""
        this = os.path.realpath(path)
        return [item for item in self._defining(kind, spec_id) if os.path.realpath(item.source.path) != this]


class ParsedMessage:
    """One message template, parsed and analysed once for every rule that needs it."""

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

    @cached_property
    def facts(self) -> TemplateFacts:
        from promptops.templating import analyse

        return analyse(self.tree) if self.tree is not None else TemplateFacts({}, [], False)

    @property
    def variables(self) -> dict[str, int]:
        """Input variables the template reads, each with the template line of its first use."""
        return self.facts.variables

    @property
    def path(self) -> tuple[Any, ...]:
        return ("messages", self.index, "content")

    def file_position(self, template_line: int) -> tuple[int, int]:
        """Where line ``template_line`` of this template sits in the YAML file."""
        source = self.spec.source
        line, col = source.where(self.path)
        lines = source.lines
        indicator = lines[line - 1][col - 1 : col] if 0 < line <= len(lines) else ""
        file_line = line + template_line if indicator in ("|", ">") else line + template_line - 1
        if file_line != line and 0 < file_line <= len(lines):
            text = lines[file_line - 1]
            col = len(text) - len(text.lstrip()) + 1
        return file_line, col
