"""Message templates: Jinja in its immutable sandbox, strict about undefined names, bounded.

A pull request's template is untrusted code that runs next to CI secrets. The
sandbox stops attribute escapes; on top of it every render is bounded, so a
template can neither hang nor exhaust memory:

- every ``for`` loop and every call (filters, methods, macros) spends from one
  step budget; calls check a wall-clock deadline before they start (loops every
  64 steps), which also stops runaway macro recursion;
- operations that multiply size (``*``, ``**``, ``+``, ``%``, ``~``, joins,
  replacements, padding, format widths and precisions, even those taken from
  arguments) are estimated before they run and refused past the output limit,
  and every intermediate value, list and mapping literals included, is kept
  under that limit;
- integers stay under MAX_INT_BITS: a product, sum or power is estimated from
  its operands' bit lengths and refused before Python computes it, since one
  multiplication of huge numbers cannot be interrupted;
- filters that run Python code per word or line (``wordwrap``, ``urlize``)
  take at most MAX_SLOW_FILTER_CHARS, and their quadratic cases (textwrap
  cutting a very long word, urlize backtracking over punctuation) are
  estimated and refused: a single call cannot outlast the deadline;
- templates work on text: a call that returns bytes is refused, as bytes
  methods would each need an estimate of their own;
- rendered output is counted as it streams.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, ValuesView
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jinja2 import DictLoader, StrictUndefined, Template, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Namespace, _PassArg
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

if TYPE_CHECKING:
    from promptops.specs import RenderLimitSettings

MAX_INT_BITS = 4096  # about 1,233 decimal digits: no prompt needs more, and arithmetic on it takes microseconds
MAX_SLOW_FILTER_CHARS = 100_000  # wordwrap and urlize run Python code per word and per line
_MAX_COPIED_CHARS = 10**9  # what textwrap may copy cutting long words (about 0.1 s)
_MAX_BACKTRACKING = 10**6  # what urlize's trailing-punctuation regex may try (about 0.1 s)


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
    def from_config(cls, settings: RenderLimitSettings) -> RenderLimits:
        """promptops.yaml's lint.render_limits: each may lower its default, never raise it (the schema says so
        too; this holds for a config that skipped it)."""
        def lowered(value: float | None, default: float) -> float:
            return default if value is None else min(value, default)

        return cls(
            max_output_chars=int(lowered(settings.max_output_chars, cls.max_output_chars)),
            max_steps=int(lowered(settings.max_loop_iterations, cls.max_steps)),
            timeout_s=float(lowered(settings.timeout_s, cls.timeout_s)),
        )


class _Budget:
    """What one render may still spend."""

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.steps = 0
        self.deadline = time.monotonic() + limits.timeout_s

    def spend(self, timed: bool = False) -> None:
        """One step; ``timed`` for a call, which may be slow: the deadline is checked before it starts."""
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise RenderLimitError(f"more than {self.limits.max_steps:,} loop iterations or calls")
        if (timed or self.steps % 64 == 0) and time.monotonic() > self.deadline:
            raise RenderLimitError(f"rendering took longer than {self.limits.timeout_s:g} s")

    def check_size(self, size: int, what: str) -> None:
        if size > self.limits.max_output_chars:
            raise RenderLimitError(f"{what} would be larger than {self.limits.max_output_chars:,} characters")


_DICT_VIEWS: tuple[type[KeysView[Any]], type[ValuesView[Any]], type[ItemsView[Any, Any]]] = (
    type({}.keys()), type({}.values()), type({}.items()))


def size_of(value: Any, limit: int) -> int:
    """Characters ``value`` would take as text, counted only up to just past ``limit``.

    Shared references count each time (``[x, x]`` prints ``x`` twice), so a value
    built by doubling is refused long before printing or comparing it would hang.
    """
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Namespace):
        value = value._Namespace__attrs  # namespace(a=x, b=x) prints its attributes
    if isinstance(value, (list, tuple, set, frozenset, dict, *_DICT_VIEWS)):
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


def _is_int(value: Any) -> bool:
    return type(value) is int  # not bool, whose arithmetic stays small


def _int_result_bits(operator: str, left: int, right: int) -> int:
    """An upper bound of the bit length of ``left <operator> right`` (0: it does not grow)."""
    if operator == "*":
        return left.bit_length() + right.bit_length()
    if operator in ("+", "-"):
        return max(left.bit_length(), right.bit_length()) + 1
    return 0  # %, // and ** (checked on its own) do not grow past their operands


_PRINTF = re.compile(r"%(?:\(([^)]*)\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.?)", re.DOTALL)


def _printf_size(template: str, values: Any, limit: int) -> int:
    """An upper bound of the length of ``template % values``.

    Each conversion counts its width, its precision and its value's size; a
    ``*`` takes the number from the values, in order, as ``%`` does.
    """
    positional = iter(values if isinstance(values, tuple) else (values,))
    mapping = values if isinstance(values, dict) else {}

    def number(written: str) -> int:
        if written == "*":
            taken = next(positional, 0)
            return abs(taken) if _is_int(taken) else 0
        if not written:
            return 0
        return int(written) if len(written) < 10 else limit + 1  # int() of thousands of digits fails

    total = len(template)
    for key, width, precision, conversion in _PRINTF.findall(template):
        total += number(width) + number(precision)
        if conversion != "%":
            total += size_of(mapping.get(key) if key else next(positional, None), limit)
        if total > limit:
            break
    return total


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


def _wordwrap_work(subject: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """textwrap cuts a word longer than the width one line at a time, copying the rest of the
    word each time: quadratic in the word's length."""
    width = _argument(args, kwargs, 0, "width", 79)
    if not _argument(args, kwargs, 1, "break_long_words", True) or not _is_int(width) or width < 1:
        return None
    words = re.finditer(rf"[^\t\n\x0b\x0c\r ]{{{width + 1},}}", str(subject))
    copied = sum(len(word.group()) ** 2 // (2 * width) for word in words)
    return f"words this long at width {width}" if copied > _MAX_COPIED_CHARS else None


def _urlize_work(subject: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """urlize strips a word's trailing punctuation with a regex that retries from every
    character of a run of ``).,>``: quadratic in the run's length."""
    runs = re.finditer(r"[).,>]{2,}", str(subject))
    tried = sum(len(run.group()) ** 2 for run in runs)
    return "such long runs of punctuation" if tried > _MAX_BACKTRACKING else None


# Filters whose time grows faster than their result: input capped, the rest estimated.
_SLOW = {"wordwrap": _wordwrap_work, "urlize": _urlize_work}


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
    """Route every loop, every ``~`` and every list, tuple and mapping literal through the
    environment's bounded helpers."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.EnvironmentAttribute("bounded_iter"), [node.iter], [], None, None)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("bounded_concat"), list(node.nodes), [], None, None)

    def visit_List(self, node: nodes.List) -> nodes.Node:
        return self._literal(node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        return self._literal(node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        return self._literal(node) if node.ctx == "load" else self.generic_visit(node)  # not a loop target

    def _literal(self, node: nodes.Expr) -> nodes.Node:
        # [x, x] doubles what x holds without a call: one in a loop would reach 2**64 items.
        self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("bounded_literal"), [node], [], None, None)


class _FieldBound:
    """str.format, field by field: a width or precision (written, or taken from an argument
    as in ``'{0:>{1}}'``) is refused before formatting when it passes what is left of the
    output limit, and the fields formatted so far are counted."""

    def __init__(self, env: BoundedSandbox, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)  # type: ignore[call-arg]
        self.room = env.limits.max_output_chars

    def format_field(self, value: Any, format_spec: str) -> Any:
        if any(len(number) > 9 or int(number) > self.room for number in re.findall(r"\d+", format_spec)):
            raise RenderLimitError("a format width or precision larger than the output limit")
        text = super().format_field(value, format_spec)  # type: ignore[misc]
        self.room -= len(text)
        if self.room < 0:
            raise RenderLimitError("a format result would be larger than the output limit")
        return text


class _BoundedFormatter(_FieldBound, SandboxedFormatter):
    pass


class _BoundedEscapeFormatter(_FieldBound, SandboxedEscapeFormatter):  # Markup.format
    pass


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with StrictUndefined and per-render budgets."""

    intercepted_binops = frozenset({"*", "**", "+", "-", "%", "//"})

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

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
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

    def bounded_literal(self, value: Any) -> Any:
        self.budget.check_size(size_of(value, self.limits.max_output_chars), "a list or mapping")
        return value

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

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map`` through a formatter that bounds every field."""
        if super().wrap_str_format(value) is None:
            return None
        template: str = value.__self__
        mapping_only = value.__name__ == "format_map"

        def bounded_format(*args: Any, **kwargs: Any) -> str:
            if mapping_only:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument, a mapping")
                mapping = args[0]
                args, kwargs = (), mapping
            if isinstance(template, Markup):
                formatter: SandboxedFormatter = _BoundedEscapeFormatter(self, escape=template.escape)
            else:
                formatter = _BoundedFormatter(self)
            return type(template)(formatter.vformat(template, args, kwargs))

        return functools.update_wrapper(bounded_format, value)

    # -- operators and calls ------------------------------------------------
    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.budget.spend()
        limit = self.limits.max_output_chars
        if _is_int(left) or _is_int(right):
            self._check_numbers(operator, left, right)
        if operator == "*":
            count, operand = (right, left) if isinstance(right, int) else (left, right)
            if isinstance(count, int) and isinstance(operand, (str, list, tuple)):
                self.budget.check_size(size_of(operand, limit) * max(count, 0), "a repetition")
        elif operator == "**" and isinstance(left, (int, float)) and isinstance(right, (int, float)):
            if abs(left) > 1 and right * math.log2(abs(left)) >= MAX_INT_BITS:
                raise RenderLimitError("a power too large to compute")
        elif operator == "+" and isinstance(left, (str, list, tuple)):
            self.budget.check_size(size_of(left, limit) + size_of(right, limit), "a + result")
        elif operator == "%" and isinstance(left, str):
            self.budget.check_size(_printf_size(left, right, limit), "a % format result")
        return super().call_binop(context, operator, left, right)

    @staticmethod
    def _check_numbers(operator: str, left: Any, right: Any) -> None:
        """Python's big-integer arithmetic runs to the end once started: estimate it first."""
        for operand in (left, right):
            if _is_int(operand) and operand.bit_length() > MAX_INT_BITS:
                raise RenderLimitError(f"arithmetic on a number of more than {MAX_INT_BITS} bits")
        if _is_int(left) and _is_int(right) and _int_result_bits(operator, left, right) > MAX_INT_BITS:
            raise RenderLimitError(f"a {operator} result of more than {MAX_INT_BITS} bits")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        __self.budget.spend(timed=True)
        name = getattr(__obj, "__name__", "")
        # String methods are estimated; str.format comes wrapped (wrap_str_format), bounded field by field.
        bound_to = getattr(__obj, "__self__", None)
        if isinstance(bound_to, str):
            __self._precheck(name, bound_to, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        __self._check_result(result, f"the result of {name or 'a call'}()")
        return result

    def _check_result(self, result: Any, what: str) -> None:
        if isinstance(result, (bytes, bytearray)):
            raise SecurityError(f"{what} is bytes: templates work on text")
        if _is_int(result) and result.bit_length() > MAX_INT_BITS:
            raise RenderLimitError(f"{what} is a number of more than {MAX_INT_BITS} bits")
        self.budget.check_size(size_of(result, self.limits.max_output_chars), what)

    def _guard(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a filter with the same checks as a call; Jinja calls filters directly."""

        skip = 0 if _PassArg.from_obj(fn) is None else 1  # context, eval context or environment

        def guarded(*args: Any, **kwargs: Any) -> Any:
            self.budget.spend(timed=True)
            # A lazy input (map, select, ...) is only sized as the filter consumes it.
            args = tuple(self.sized(a) if isinstance(a, Iterator) else a for a in args)
            values = args[skip:]
            if values:
                self._precheck(name, values[0], tuple(values[1:]), kwargs)
            result = fn(*args, **kwargs)
            if isinstance(result, Iterator):
                result = list(self.sized(result))
            self._check_result(result, f"the {name} filter's result")
            return result

        if hasattr(fn, "jinja_pass_arg"):
            guarded.jinja_pass_arg = fn.jinja_pass_arg  # type: ignore[attr-defined]
        guarded.__name__ = name
        return guarded

    def _precheck(self, name: str, subject: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Refuse before running an operation whose result would break a limit, or whose work would."""
        limit = self.limits.max_output_chars
        arguments = list(args) + list(kwargs.values())
        for value in arguments:
            if _is_int(value) and abs(value) > limit:
                raise RenderLimitError(f"{name}() with an argument larger than {limit:,}")
        if _is_int(subject) and subject.bit_length() > MAX_INT_BITS:
            raise RenderLimitError(f"{name}() of a number of more than {MAX_INT_BITS} bits")
        if name == "format":  # the filter: printf-style, value % (kwargs or args)
            text = subject if isinstance(subject, str) else ""
            self.budget.check_size(_printf_size(text, kwargs or tuple(args), limit), "a format result")
            return
        slow = _SLOW.get(name)
        if slow is not None:
            self._check_work(name, subject, slow(subject, args, kwargs))
        estimate = _GROWTH.get(name)
        if estimate is not None:
            self.budget.check_size(estimate(subject, args, kwargs, limit), f"a {name}() result")

    @staticmethod
    def _check_work(name: str, subject: Any, too_slow: str | None) -> None:
        if size_of(subject, MAX_SLOW_FILTER_CHARS) > MAX_SLOW_FILTER_CHARS:
            raise RenderLimitError(f"{name}() on more than {MAX_SLOW_FILTER_CHARS:,} characters would be too slow")
        if too_slow:
            raise RenderLimitError(f"{name}() on {too_slow} would be too slow")

    def sized(self, items: Iterable[Any]) -> Iterator[Any]:
        """Items of a lazy sequence, refused once together they pass the size limit."""
        budget, limit, total = self.budget, self.limits.max_output_chars, 0
        for item in items:
            budget.spend()
            total += size_of(item, limit)
            budget.check_size(total, "a sequence")
            yield item

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
    if not isinstance(kind, str):  # no type, or an empty list of them
        return "sample"
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, "sample")


class InputError(ValueError):
    """Variables that do not match a prompt's declared inputs."""


def validate_inputs(spec: Any, variables: dict[str, Any]) -> None:
    """Raise InputError when ``variables`` break the prompt's inputs schema (JSON Schema 2020-12)."""
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    # An empty registry: without one, jsonschema fetches a $ref to anything but the schema itself (http, file://).
    validator = Draft202012Validator(spec.inputs or {"type": "object"}, registry=Registry())
    try:
        errors = sorted(validator.iter_errors(variables), key=str)
    except Unresolvable as exc:
        raise InputError(f"the inputs schema of '{spec.id}' has a $ref promptops does not follow ({exc}): "
                         "point it inside the schema ('#/$defs/...')") from None
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
