"""Message templates: Jinja in its immutable sandbox, strict about undefined names, bounded.

A pull request's template is untrusted code that runs next to CI secrets. The
sandbox stops attribute escapes; on top of it every render is bounded, so a
template can neither hang nor exhaust memory:

- every ``for`` loop and every call (filters, methods, macros) spends from one
  step budget and checks a wall-clock deadline, which also stops runaway
  macro recursion;
- operations that multiply size (``*``, ``**``, ``+``, ``%``, ``~``, joins,
  replacements, padding) are estimated before they run and refused past the
  output limit, and every intermediate value is kept under that limit;
- rendered output is counted as it streams.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from jinja2 import DictLoader, StrictUndefined, Template, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import _PassArg
from jinja2.visitor import NodeTransformer

_FORMAT_WIDTH = re.compile(r"[%:][-+ #0<>^=_,]*(\d+)(?:\.(\d+))?")


class RenderLimitError(SecurityError):
    """A render went past one of its limits."""


class RenderError(TemplateError):
    """The template failed at render time in a way Jinja does not classify itself."""


@dataclass(frozen=True)
class RenderLimits:
    max_output_chars: int = 1_000_000
    max_steps: int = 100_000
    timeout_s: float = 2.0

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> "RenderLimits":
        """promptops.yaml's lint.render_limits: each may lower its default, never raise it (the schema says so
        too; this holds for a config that skipped it)."""
        return cls(
            max_output_chars=min(int(section.get("max_output_chars", cls.max_output_chars)), cls.max_output_chars),
            max_steps=min(int(section.get("max_loop_iterations", cls.max_steps)), cls.max_steps),
            timeout_s=min(float(section.get("timeout_s", cls.timeout_s)), cls.timeout_s),
        )


class _Budget:
    """What one render may still spend."""

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.steps = 0
        self.deadline = time.monotonic() + limits.timeout_s

    def spend(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise RenderLimitError(f"more than {self.limits.max_steps:,} loop iterations or calls")
        if self.steps % 64 == 0 and time.monotonic() > self.deadline:
            raise RenderLimitError(f"rendering took longer than {self.limits.timeout_s:g} s")

    def check_size(self, size: int, what: str) -> None:
        if size > self.limits.max_output_chars:
            raise RenderLimitError(f"{what} would be larger than {self.limits.max_output_chars:,} characters")


def size_of(value: Any, limit: int) -> int:
    """Characters ``value`` would take as text, counted only up to just past ``limit``."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        total = 2
        items = value.items() if isinstance(value, dict) else value
        for item in items:
            total += size_of(item, limit - total) + 2
            if total > limit:
                return total
        return total
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return limit + 1
    return 24  # a number, a boolean or an opaque object renders short


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _text_size(value: Any, limit: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else size_of(str(value), limit)


def _replace_size(subject: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> int:
    if not isinstance(subject, str) or len(args) < 2:
        return 0
    old, new = str(args[0]), str(args[1])
    occurrences = subject.count(old) if old else len(subject) + 1
    return len(subject) + occurrences * max(0, len(new) - len(old))


def _join_size(subject: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> int:
    if isinstance(subject, str):  # str.join(items)
        items, separator = (args[0] if args else ()), subject
    else:  # the join filter: items|join(separator)
        items, separator = subject, str(_argument(args, kwargs, 0, "d", ""))
    count = len(items) if hasattr(items, "__len__") else 0
    return size_of(items, limit) + len(separator) * count


def _indent_size(subject: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> int:
    width = _text_size(_argument(args, kwargs, 0, "width", 4), limit)  # a number of spaces, or a string
    return size_of(subject, limit) + (str(subject).count("\n") + 1) * abs(width)


def _pad_size(subject: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> int:
    width = _argument(args, kwargs, 0, "width", 0)
    return max(size_of(subject, limit), width if isinstance(width, int) else 0)


def _expandtabs_size(subject: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> int:
    tab = _argument(args, kwargs, 0, "tabsize", 8)
    return size_of(subject, limit) + str(subject).count("\t") * abs(tab if isinstance(tab, int) else 8)


def _wordwrap_size(subject: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> int:
    width = _argument(args, kwargs, 0, "width", 79)
    wrap = _argument(args, kwargs, 2, "wrapstring", None)
    size = size_of(subject, limit)
    lines = size // max(1, width if isinstance(width, int) else 79) + 1
    return size + lines * len(str(wrap if wrap is not None else "\n"))


def _translate_size(subject: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> int:
    table = args[0] if args else {}
    longest = max((size_of(str(v), limit) for v in table.values()), default=1) if isinstance(table, dict) else 1
    return size_of(subject, limit) * max(1, longest)


# How large the result of each amplifying filter or string method can be, from its arguments.
_GROWTH = {
    "replace": _replace_size,
    "join": _join_size,
    "indent": _indent_size,
    "center": _pad_size,
    "ljust": _pad_size,
    "rjust": _pad_size,
    "zfill": _pad_size,
    "expandtabs": _expandtabs_size,
    "wordwrap": _wordwrap_size,
    "translate": _translate_size,
}


_SHORT_SCALARS = (bool, float, type(None))
_LOOP_ATTRIBUTES = frozenset({"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth",
                              "depth0", "previtem", "nextitem"})


class _Bounder(NodeTransformer):
    """Route every loop and every ``~`` through the environment's bounded helpers."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.EnvironmentAttribute("bounded_iter"), [node.iter], [], None, None)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("bounded_concat"), list(node.nodes), [], None, None)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with StrictUndefined and per-render budgets."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, limits: RenderLimits | None = None) -> None:
        # optimized=False: Jinja would otherwise fold constant expressions such as
        # a filter call at compile time, outside every bound.
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            optimized=False,
            keep_trailing_newline=True,
            loader=DictLoader({}),  # no {% include %} of files: a template sees only its inputs
        )
        self.limits = limits or RenderLimits()
        self._local = threading.local()
        self.compiled = functools.lru_cache(maxsize=4096)(self.from_string)
        for name in ("lipsum", "cycler", "joiner"):
            self.globals.pop(name, None)
        self.globals["range"] = self._range
        self.filters = {name: self._guard(name, fn) for name, fn in self.filters.items()}
        self.finalize = self._finalize

    # -- the budget ---------------------------------------------------------
    @property
    def budget(self) -> _Budget:
        budget = getattr(self._local, "budget", None)
        if budget is None:  # a render outside render() still gets bounds
            budget = self._local.budget = _Budget(self.limits)
        return budget

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False) -> str:
        return super()._generate(_Bounder().visit(source), name, filename, defer_init)

    def bounded_iter(self, iterable: Any) -> Iterator[Any]:
        budget = self.budget
        for item in iterable:
            budget.spend()
            yield item

    def bounded_concat(self, *parts: Any) -> str:
        texts = [str(part) for part in parts]
        self.budget.check_size(sum(map(len, texts)), "a ~ concatenation")
        return "".join(texts)

    def _range(self, *args: int) -> range:
        result = range(*args)
        self.budget.check_size(len(result), "range()")
        return result

    def _finalize(self, value: Any) -> Any:
        limit = self.limits.max_output_chars
        kind = type(value)
        if (kind is str and len(value) <= limit) or kind in _SHORT_SCALARS:  # on every {{ }}: keep it cheap
            return value
        self.budget.check_size(size_of(value, limit), "an output value")
        return value

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is LoopContext and attribute in _LOOP_ATTRIBUTES:  # {{ loop.index }}: safe, and hot
            return getattr(obj, attribute)
        return super().getattr(obj, attribute)

    # -- operators and calls ------------------------------------------------
    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.budget.spend()
        limit = self.limits.max_output_chars
        if operator == "*":
            count, operand = (right, left) if isinstance(right, int) else (left, right)
            if isinstance(count, int) and isinstance(operand, (str, list, tuple)):
                self.budget.check_size(size_of(operand, limit) * max(count, 0), "a repetition")
        elif operator == "**" and isinstance(left, (int, float)) and isinstance(right, (int, float)):
            if abs(left) > 1 and right * math.log2(abs(left)) > 4096:
                raise RenderLimitError("a power too large to compute")
        elif operator == "+" and isinstance(left, (str, list, tuple)):
            self.budget.check_size(size_of(left, limit) + size_of(right, limit), "a + result")
        elif operator == "%" and isinstance(left, str):
            self._check_format(left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        __self.budget.spend()
        name = getattr(__obj, "__name__", "")
        # The sandbox hands out str.format wrapped; the wrapped method knows its string.
        bound_to = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(bound_to, str):
            __self._precheck(name, bound_to, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        __self.budget.check_size(size_of(result, __self.limits.max_output_chars), f"the result of {name or 'a call'}()")
        return result

    def _guard(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a filter with the same checks as a call; Jinja calls filters directly."""

        skip = 0 if _PassArg.from_obj(fn) is None else 1  # context, eval context or environment

        def guarded(*args: Any, **kwargs: Any) -> Any:
            self.budget.spend()
            # A lazy input (map, select, ...) is only sized as the filter consumes it.
            args = tuple(self.sized(a) if isinstance(a, Iterator) else a for a in args)
            values = args[skip:]
            if values:
                self._precheck(name, values[0], tuple(values[1:]), kwargs)
            result = fn(*args, **kwargs)
            if isinstance(result, Iterator):
                result = list(self.sized(result))
            self.budget.check_size(size_of(result, self.limits.max_output_chars), f"the {name} filter's result")
            return result

        if hasattr(fn, "jinja_pass_arg"):
            guarded.jinja_pass_arg = fn.jinja_pass_arg  # type: ignore[attr-defined]
        guarded.__name__ = name
        return guarded

    def _precheck(self, name: str, subject: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Refuse before running an operation whose result would break the size limit."""
        limit = self.limits.max_output_chars
        arguments = list(args) + list(kwargs.values())
        for value in arguments:
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
                raise RenderLimitError(f"{name}() with an argument larger than {limit:,}")
        if name in ("format", "format_map"):
            self._check_format(subject if isinstance(subject, str) else "", arguments)
            return
        estimate = _GROWTH.get(name)
        if estimate is not None:
            self.budget.check_size(estimate(subject, args, kwargs, limit), f"a {name}() result")

    def sized(self, items: Iterable[Any]) -> Iterator[Any]:
        """Items of a lazy sequence, refused once together they pass the size limit."""
        budget, limit, total = self.budget, self.limits.max_output_chars, 0
        for item in items:
            budget.spend()
            total += size_of(item, limit)
            budget.check_size(total, "a sequence")
            yield item

    def _check_format(self, template: str, values: Any) -> None:
        """``"%09999d" % x`` or ``"{:>9999}".format(x)`` pad; ``"{0}{0}"`` repeats."""
        for match in _FORMAT_WIDTH.finditer(template):
            for number in match.groups():
                if number and int(number) > self.limits.max_output_chars:
                    raise RenderLimitError("a format width larger than the output limit")
        fields = template.count("%") + template.count("{")
        self.budget.check_size(len(template) + fields * size_of(values, self.limits.max_output_chars), "a format result")

    # -- rendering ------------------------------------------------------------
    def render(self, source: str, variables: dict[str, Any]) -> str:
        budget = self._local.budget = _Budget(self.limits)
        limit = self.limits.max_output_chars
        try:
            template: Template = self.compiled(source)
            pieces: list[str] = []
            total = 0
            for piece in template.generate(**variables):
                total += len(piece)
                if total > limit:
                    budget.check_size(total, "the rendered message")
                pieces.append(piece)
            return "".join(pieces)
        except (RecursionError, SyntaxError, MemoryError) as exc:
            # Python's compiler and stack have limits of their own; a template that reaches them is refused.
            what = "too deeply nested to compile" if isinstance(exc, SyntaxError) else "recursion too deep"
            raise RenderLimitError(f"the template is {what}") from None
        except TemplateError:
            raise
        except Exception as exc:  # untrusted code: any failure is the template's
            raise RenderError(f"{type(exc).__name__}: {exc}") from None
        finally:
            self._local.budget = None


@functools.lru_cache(maxsize=8)
def sandbox(limits: RenderLimits = RenderLimits()) -> BoundedSandbox:
    """One shared sandbox per set of limits (budgets are per render and per thread)."""
    return BoundedSandbox(limits)


_PARSER = sandbox()


MAX_TREE_DEPTH = 100


def parse(source: str) -> nodes.Template:
    """The template's syntax tree; raises jinja2.TemplateSyntaxError.

    Jinja's own tools (scope analysis, code generation) recurse over the tree,
    so a tree deeper than MAX_TREE_DEPTH is refused here, once, as a syntax error.
    """
    try:
        tree = _PARSER.parse(source)
    except RecursionError:
        raise TemplateSyntaxError("the template nests too deeply to parse", 1) from None
    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            raise TemplateSyntaxError(f"the template nests deeper than {MAX_TREE_DEPTH} levels", node.lineno or 1)
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
    return tree


_AMPLIFYING = (nodes.Macro, nodes.CallBlock, nodes.Call, nodes.Mul, nodes.Pow, nodes.Mod, nodes.Add, nodes.Concat)
_BINDING = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.Assign, nodes.AssignBlock, nodes.With,
            nodes.Import, nodes.FromImport, nodes.FilterBlock, nodes.Scope, nodes.OverlayScope)


@dataclass
class TemplateFacts:
    """What one walk over a template's syntax tree tells the rules."""

    variables: dict[str, int]  # input variables read, with the template line of their first read
    attributes: list[tuple[str, int]]  # constant attribute and item names accessed, with lines
    may_amplify: bool  # rendering could cost more than reading the inputs once


_INTERPRETER_NAMES = frozenset(
    {"mro", "func_globals", "f_globals", "f_locals", "f_back", "gi_frame", "gi_code", "cr_frame", "cr_code",
     "ag_frame", "tb_frame", "co_code", "im_func", "func_code"}
)


def forbidden_attribute(name: str) -> bool:
    """Private or interpreter attributes: what sandbox escapes reach for."""
    return name.startswith("_") or name in _INTERPRETER_NAMES


def analyse(tree: nodes.Template) -> TemplateFacts:
    loads: dict[str, int] = {}
    attributes: list[tuple[str, int]] = []
    amplifies = binds = False
    stack: list[nodes.Node] = [tree]
    while stack:
        node = stack.pop()
        stack.extend(node.iter_child_nodes())
        if isinstance(node, nodes.Name):
            if node.ctx == "load" and node.lineno < loads.get(node.name, node.lineno + 1):
                loads[node.name] = node.lineno
        elif isinstance(node, nodes.Getattr):
            attributes.append((node.attr, node.lineno))
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            attributes.append((node.arg.value, node.lineno))
        if isinstance(node, _BINDING):
            binds = True
        if isinstance(node, _AMPLIFYING):
            amplifies = True
        elif isinstance(node, nodes.Filter) and (node.args or node.kwargs or node.dyn_args or node.dyn_kwargs):
            amplifies = True  # filters with arguments can pad, repeat or batch
        elif isinstance(node, nodes.For) and not isinstance(node.iter, (nodes.Name, nodes.Getattr)):
            amplifies = True  # a loop over a computed value, not over an input
    # Without anything that binds names, every name read comes from the inputs;
    # otherwise Jinja's own scope tracking decides (it costs a code-generation pass).
    names = set(loads) if not binds else set(meta.find_undeclared_variables(tree))
    names -= set(_PARSER.globals)
    variables = {name: loads.get(name, 1) for name in sorted(names)}
    return TemplateFacts(variables, sorted(attributes, key=lambda a: a[1]), amplifies)


def reads_variables(tree: nodes.Template) -> bool:
    """Whether the template reads any name but the sandbox's globals (cheap: no scope analysis)."""
    return any(node.ctx == "load" and node.name not in _PARSER.globals for node in tree.find_all(nodes.Name))


def variables_used(tree: nodes.Template) -> set[str]:
    """Names the template reads from its inputs (globals such as range excluded)."""
    return set(analyse(tree).variables)


def render(source: str, variables: dict[str, Any], limits: RenderLimits | None = None) -> str:
    """Render one template in the bounded sandbox.

    Raises jinja2.TemplateError (including SecurityError and RenderLimitError)
    for anything the template does wrong.
    """
    return sandbox(limits or RenderLimits()).render(source, variables)




def sample_inputs(spec: Any) -> dict[str, Any]:
    """Plausible values for a prompt's declared inputs, for renders that have no real ones."""
    return {name: _sample(schema) for name, schema in spec.declared_inputs.items()}


def _sample(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "sample"
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if kind == "array":
        return [_sample(schema.get("items")), _sample(schema.get("items"))]
    if kind == "object":
        return {name: _sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, "sample")


class InputError(ValueError):
    """Variables that do not match a prompt's declared inputs."""


def validate_inputs(spec: Any, variables: dict[str, Any]) -> None:
    """Raise InputError when ``variables`` break the prompt's inputs schema (JSON Schema 2020-12)."""
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(spec.inputs or {"type": "object"}).iter_errors(variables), key=str)
    if errors:
        details = "; ".join(f"{'.'.join(map(str, e.absolute_path)) or '(inputs)'}: {e.message}" for e in errors[:5])
        raise InputError(f"inputs of '{spec.id}' do not match its schema: {details}")


def render_messages(spec: Any, variables: dict[str, Any], limits: RenderLimits | None = None) -> list[dict[str, str]]:
    """The exact messages a call would send, rendered from ``variables`` as given.

    Callers that take variables from outside validate them first (validate_inputs).
    Raises TemplateError for a template that fails.
    """
    messages = []
    for message in spec.messages:
        rendered = {"role": message.role, "content": render(message.content, variables, limits)}
        if message.name:
            rendered["name"] = message.name
        messages.append(rendered)
    return messages


__all__ = [
    "BoundedSandbox",
    "InputError",
    "RenderError",
    "RenderLimitError",
    "RenderLimits",
    "TemplateError",
    "TemplateFacts",
    "analyse",
    "forbidden_attribute",
    "parse",
    "render",
    "reads_variables",
    "render_messages",
    "validate_inputs",
    "sample_inputs",
    "variables_used",
]
