"""Safe YAML parsing that remembers where every value came from.

libyaml (through PyYAML's C parser) produces events; we build plain JSON-like
values from them ourselves, without recursion, so that we can
- record the line and column of every value and every mapping key,
- refuse duplicate keys, tags other than the core schema (``!!python/...``
  is never constructed), deep nesting and alias bombs (counted, never expanded),
- keep timestamps as the strings the author wrote (specs are JSON-like).

PyYAML's own composer recurses in C and crashes the process on documents
nested some 100,000 levels deep; its event parser does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from promptops.codes import DUPLICATE_KEY, TOO_COMPLEX, UNSAFE_TAG, YAML_SYNTAX

try:  # libyaml is an optional part of PyYAML; the pure-Python composer is the fallback.
    from yaml import CSafeLoader as _Composer
except ImportError:  # pragma: no cover - exercised only where libyaml is missing
    from yaml import SafeLoader as _Composer  # type: ignore[assignment]

MAX_DEPTH = 64
MAX_NODES = 200_000
# YAML 1.1 reads 1:1:1... as a base-60 integer, one big multiplication a digit: quadratic in its length.
MAX_NUMBER_CHARS = 10_000

JsonPath = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_STR = f"{_TAG}str"
_TIMESTAMP = f"{_TAG}timestamp"
_NUMBERS = (f"{_TAG}int", f"{_TAG}float")


class YamlError(Exception):
    """A document that cannot become a spec; ``code`` is its lint rule code."""

    def __init__(self, code: str, message: str, line: int = 1, col: int = 1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.col = col


@dataclass
class Positions:
    """1-based (line, col) of each value, and of each mapping key, by JSON path."""

    values: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)

    def of(self, path: JsonPath, *, key: bool = False) -> tuple[int, int]:
        """Where ``path`` is, or its nearest ancestor that exists, or the file start."""
        path = tuple(path)
        if key and path in self.keys:
            return self.keys[path]
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), (1, 1))


def _mark(item: Any) -> tuple[int, int]:
    return item.start_mark.line + 1, item.start_mark.column + 1


@dataclass
class _Open:
    """A mapping or sequence whose end event has not come yet."""

    value: Any
    path: JsonPath
    anchor: str | None
    nodes_before: int
    key: Any = None  # mappings: the key waiting for its value
    has_key: bool = False
    merges: list[dict[str, Any]] = field(default_factory=list)


class _MergeKey:
    """Stands for ``<<`` while its mapping is being read."""


_MERGE = f"{_TAG}merge"
_MERGE_KEY = _MergeKey()


class _Builder:
    """Turns libyaml's event stream into values, iteratively: no recursion, whatever the depth."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.positions = Positions()
        self.nodes = 0
        self.stack: list[_Open] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.root: Any = None
        constructor = yaml.SafeLoader("")  # used only for its scalar constructors
        self._constructors = {
            f"{_TAG}int": constructor.construct_yaml_int,
            f"{_TAG}float": constructor.construct_yaml_float,
            f"{_TAG}bool": constructor.construct_yaml_bool,
            f"{_TAG}null": constructor.construct_yaml_null,
        }

    def run(self) -> Any:
        documents = 0
        while True:
            event = self.loader.get_event()
            kind = type(event)
            if kind is yaml.ScalarEvent:
                self._scalar(event)
            elif kind is yaml.MappingStartEvent:
                self._open(event, {}, f"{_TAG}map")
            elif kind is yaml.SequenceStartEvent:
                self._open(event, [], f"{_TAG}seq")
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                self._close()
            elif kind is yaml.AliasEvent:
                self._alias(event)
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise YamlError(YAML_SYNTAX, "expected a single YAML document, found several (---)", *_mark(event))
            elif kind is yaml.StreamEndEvent:
                return self.root

    def _count(self, amount: int, event: Any) -> None:
        self.nodes += amount
        if self.nodes > MAX_NODES:
            raise YamlError(TOO_COMPLEX, f"document expands to more than {MAX_NODES} values (alias bomb?)",
                            *_mark(event))

    def _scalar(self, event: Any) -> None:
        self._count(1, event)
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag in (_STR, _TIMESTAMP):  # timestamps stay the text the author wrote
            value: Any = event.value
        elif tag == _MERGE and self._expecting_key():
            value = _MERGE_KEY
        elif tag in _NUMBERS and len(event.value) > MAX_NUMBER_CHARS:
            raise YamlError(TOO_COMPLEX, f"a number {len(event.value):,} characters long "
                                         f"(at most {MAX_NUMBER_CHARS:,}; quote it to make it text)", *_mark(event))
        else:
            construct = self._constructors.get(tag)
            if construct is None:
                raise YamlError(UNSAFE_TAG, f"tag {tag!r} is not allowed (only plain YAML values)", *_mark(event))
            value = construct(yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style))
        if self._expecting_key() and not isinstance(value, (str, _MergeKey)):
            value = event.value  # `yes:` or `1:` as keys are surprises in YAML 1.1; keep the text written
        if event.anchor:
            self.anchors[event.anchor] = (value, 1)
        self._place(value, event)

    def _open(self, event: Any, value: Any, default_tag: str) -> None:
        if event.tag not in (None, "!", default_tag):
            raise YamlError(UNSAFE_TAG, f"tag {event.tag!r} is not allowed (only plain YAML values)", *_mark(event))
        self._count(1, event)
        if len(self.stack) >= MAX_DEPTH:
            raise YamlError(TOO_COMPLEX, f"nesting deeper than {MAX_DEPTH} levels", *_mark(event))
        if self._expecting_key():
            raise YamlError(YAML_SYNTAX, "mapping keys must be plain strings", *_mark(event))
        path = self._child_path()
        self.positions.values[path] = _mark(event)
        self.stack.append(_Open(value, path, event.anchor, self.nodes))

    def _close(self) -> None:
        done = self.stack.pop()
        value = done.value
        if done.merges:
            merged: dict[str, Any] = {}
            for source in reversed(done.merges):  # earlier sources win over later ones
                merged.update(source)
            merged.update(value)  # explicit keys win over merged ones
            value = merged
        if done.anchor:
            self.anchors[done.anchor] = (value, self.nodes - done.nodes_before + 1)
        self._attach(value, done.path)

    def _alias(self, event: Any) -> None:
        if event.anchor not in self.anchors:
            raise YamlError(YAML_SYNTAX, f"alias *{event.anchor} refers to no complete anchor", *_mark(event))
        value, size = self.anchors[event.anchor]
        self._count(size, event)
        if self._expecting_key() and not isinstance(value, str):
            raise YamlError(YAML_SYNTAX, "mapping keys must be plain strings", *_mark(event))
        self._place(value, event)

    def _expecting_key(self) -> bool:
        return bool(self.stack) and isinstance(self.stack[-1].value, dict) and not self.stack[-1].has_key

    def _child_path(self) -> JsonPath:
        if not self.stack:
            return ()
        top = self.stack[-1]
        return top.path + ((len(top.value),) if isinstance(top.value, list) else (top.key,))

    def _place(self, value: Any, event: Any) -> None:
        """Put a scalar or alias where the open container expects it."""
        if self._expecting_key():
            top = self.stack[-1]
            if value is not _MERGE_KEY and value in top.value:
                first = self.positions.keys.get(top.path + (value,), (0, 0))[0]
                raise YamlError(DUPLICATE_KEY, f"duplicate key {value!r} (first defined on line {first})",
                                *_mark(event))
            top.key, top.has_key = value, True
            if value is not _MERGE_KEY:
                self.positions.keys[top.path + (value,)] = _mark(event)
            return
        path = self._child_path()
        self.positions.values[path] = _mark(event)
        self._attach(value, path)

    def _attach(self, value: Any, path: JsonPath) -> None:
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        if isinstance(top.value, list):
            top.value.append(value)
            return
        if top.key is _MERGE_KEY:
            sources = value if isinstance(value, list) else [value]
            if not all(isinstance(source, dict) for source in sources):
                line, col = self.positions.values.get(path, (1, 1))
                raise YamlError(YAML_SYNTAX, "a merge key (<<) must refer to a mapping or a list of them", line, col)
            top.merges.extend(sources)
        else:
            top.value[top.key] = value
        top.key, top.has_key = None, False


def parse(text: str) -> tuple[Any, Positions]:
    """Parse one YAML document into JSON-like values and their positions.

    Raises YamlError for anything that cannot be a spec. An empty document
    parses to None.
    """
    loader = _Composer(text)
    builder = _Builder(loader)
    try:
        return builder.run(), builder.positions
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        line = min(line, max(1, len(text.splitlines())))  # an error at the end of input belongs to the last line
        problem = exc.problem or "invalid YAML"
        if "maximum nesting depth" in problem:
            # PyYAML 6.0.4 and later stop flow collections nested 1,000 deep in the scanner, before our own
            # depth check sees them: the same finding either way.
            raise YamlError(TOO_COMPLEX, f"nesting deeper than {MAX_DEPTH} levels", line, col) from None
        if mark is not None and text[mark.index : mark.index + 1] == "\t":
            problem = "a tab character; YAML indentation must use spaces"
        elif exc.context and exc.context_mark and exc.context_mark.line != (mark.line if mark else -1):
            problem = f"{problem} ({exc.context} that started on line {exc.context_mark.line + 1})"
        raise YamlError(YAML_SYNTAX, problem, line, col) from None
    except yaml.YAMLError as exc:
        raise YamlError(YAML_SYNTAX, str(exc).splitlines()[0] if str(exc) else "invalid YAML") from None
    finally:
        loader.dispose()
