"""Safe YAML parsing that remembers where every value came from.

libyaml (through PyYAML's C composer) builds the node graph; we turn nodes
into plain JSON-like values ourselves so that we can
- record the line and column of every value and every mapping key,
- refuse duplicate keys, tags other than the core schema (``!!python/...``
  is never constructed), deep nesting and alias bombs,
- keep timestamps as the strings the author wrote (specs are JSON-like).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Union

import yaml

try:  # libyaml is an optional part of PyYAML; the pure-Python composer is the fallback.
    from yaml import CSafeLoader as _Composer
except ImportError:  # pragma: no cover - exercised only where libyaml is missing
    from yaml import SafeLoader as _Composer  # type: ignore[assignment]

MAX_DEPTH = 64
MAX_NODES = 200_000

JsonPath = tuple[Union[str, int], ...]

_TAG = "tag:yaml.org,2002:"
_STR = f"{_TAG}str"
_TIMESTAMP = f"{_TAG}timestamp"
_BRACKETS = re.compile(r"[\[\]{}]")
# "- - - - x" or "? ? ? x": block nesting on one line, which libyaml also recurses on.
_INLINE_BLOCK_NESTING = re.compile(r"(?:[-?:][ \t]+){%d,}" % MAX_DEPTH)


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


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _check_depth(text: str) -> None:
    """libyaml recurses on nesting and crashes the process past ~100k levels: refuse first.

    Nesting by indentation is bounded by the file size limit (each level costs
    a column on every line); flow brackets and block indicators on one line are not.
    """
    inline = _INLINE_BLOCK_NESTING.search(text)
    if inline:
        line = text.count("\n", 0, inline.start()) + 1
        raise YamlError("PO104", f"nesting deeper than {MAX_DEPTH} levels", line, 1)
    depth = 0
    for match in _BRACKETS.finditer(text):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                raise YamlError("PO104", f"nesting deeper than {MAX_DEPTH} levels", line, 1)
        else:
            depth = max(0, depth - 1)


class _Builder:
    def __init__(self) -> None:
        self.positions = Positions()
        self.nodes = 0
        constructor = yaml.SafeLoader("")  # used only for its scalar constructors
        self._constructors = {
            f"{_TAG}int": constructor.construct_yaml_int,
            f"{_TAG}float": constructor.construct_yaml_float,
            f"{_TAG}bool": constructor.construct_yaml_bool,
            f"{_TAG}null": constructor.construct_yaml_null,
        }

    def build(self, node: yaml.Node, path: JsonPath, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            line, col = _mark(node)
            raise YamlError("PO104", f"document expands to more than {MAX_NODES} values (alias bomb?)", line, col)
        if depth > MAX_DEPTH:
            line, col = _mark(node)
            raise YamlError("PO104", f"nesting deeper than {MAX_DEPTH} levels", line, col)
        self.positions.values[path] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            self._require_tag(node, f"{_TAG}seq")
            return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar_value(node)

    def _require_tag(self, node: yaml.Node, expected: str) -> None:
        if node.tag != expected:
            line, col = _mark(node)
            raise YamlError("PO103", f"tag {node.tag!r} is not allowed (only plain YAML values)", line, col)

    def _scalar_value(self, node: yaml.Node) -> Any:
        tag = node.tag
        if tag == _STR or tag == _TIMESTAMP:  # timestamps stay the text the author wrote
            return node.value
        construct = self._constructors.get(tag)
        if construct is None:
            line, col = _mark(node)
            raise YamlError("PO103", f"tag {tag!r} is not allowed (only plain YAML values)", line, col)
        return construct(node)

    def _mapping(self, node: yaml.MappingNode, path: JsonPath, depth: int) -> dict[str, Any]:
        self._require_tag(node, f"{_TAG}map")
        result: dict[str, Any] = {}
        for key_node, value_node in self._merged_pairs(node):
            key = self._key(key_node)
            if key in result:
                line, col = _mark(key_node)
                first = self.positions.keys.get(path + (key,), (0, 0))[0]
                raise YamlError("PO102", f"duplicate key {key!r} (first defined on line {first})", line, col)
            self.positions.keys[path + (key,)] = _mark(key_node)
            result[key] = self.build(value_node, path + (key,), depth + 1)
        return result

    def _merged_pairs(self, node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
        """Expand ``<<: *anchor`` merge keys; explicit keys win over merged ones."""
        own: list[tuple[yaml.Node, yaml.Node]] = []
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != f"{_TAG}merge":
                own.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    line, col = _mark(source)
                    raise YamlError("PO101", "a merge key (<<) must refer to a mapping", line, col)
                merged.extend(self._merged_pairs(source))
        own_keys = {k.value for k, _ in own if isinstance(k, yaml.ScalarNode)}
        return [(k, v) for k, v in merged if k.value not in own_keys] + own

    def _key(self, node: yaml.Node) -> str:
        if not isinstance(node, yaml.ScalarNode):
            line, col = _mark(node)
            raise YamlError("PO101", "mapping keys must be plain strings", line, col)
        value = self._scalar_value(node)
        # `yes:` or `1:` as keys are surprises in YAML 1.1; keep the text the author wrote.
        return node.value if not isinstance(value, str) else value


def parse(text: str) -> tuple[Any, Positions]:
    """Parse one YAML document into JSON-like values and their positions.

    Raises YamlError for anything that cannot be a spec. An empty document
    parses to None.
    """
    _check_depth(text)
    composer = _Composer(text)
    try:
        node = composer.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        if mark is not None and text[mark.index : mark.index + 1] == "\t":
            problem = "a tab character; YAML indentation must use spaces"
        elif exc.context and "expected a single document" in exc.context:
            problem = "expected a single YAML document, found several (---)"
        elif exc.context and exc.context_mark and exc.context_mark.line != (mark.line if mark else -1):
            problem = f"{problem} ({exc.context} that started on line {exc.context_mark.line + 1})"
        raise YamlError("PO101", problem, line, col) from None
    except yaml.YAMLError as exc:
        raise YamlError("PO101", str(exc).splitlines()[0] if str(exc) else "invalid YAML") from None
    finally:
        composer.dispose()
    builder = _Builder()
    if node is None:
        return None, builder.positions
    return builder.build(node, (), 0), builder.positions
