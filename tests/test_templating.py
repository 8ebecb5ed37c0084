"""The bounded Jinja sandbox (promptops.templating): escapes are refused, every way to hang or
exhaust memory stops quickly with a TemplateError and little memory, and ordinary templates
render exactly as Jinja would."""

from __future__ import annotations

import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from jinja2 import TemplateError, TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SecurityError

from promptops.templating import (
    MAX_INT_BITS,
    MAX_SLOW_FILTER_CHARS,
    RenderLimitError,
    RenderLimits,
    parse,
    render,
    variables_used,
)

# CPU seconds (time.process_time): a runaway render burns CPU, which the other work of a busy machine does not
# add to; the wall-clock deadline only stops it earlier there.
MAX_SECONDS = 5.0  # the default render deadline is 2 s; the rest is slack
MAX_PEAK_BYTES = 50_000_000


def _fails(source: str, variables: dict[str, Any] | None = None, limits: RenderLimits | None = None,
           expected: type[BaseException] = TemplateError) -> tuple[BaseException, float, int]:
    """Render twice, expecting ``expected``: once timed, once under tracemalloc. Returns the
    exception, the CPU seconds and the peak bytes allocated."""
    variables = variables or {}
    start = time.process_time()
    with pytest.raises(TemplateError) as timed:
        render(source, variables, limits)
    seconds = time.process_time() - start
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError) as measured:
            render(source, variables, limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert type(timed.value) is type(measured.value)
    assert isinstance(timed.value, expected), repr(timed.value)
    return timed.value, seconds, peak


# -- sandbox escapes ----------------------------------------------------------------------

@pytest.mark.parametrize("source, variables", [
    ("{{ ''.__class__.__mro__ }}", {}),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", {}),
    ("{{ ().__class__.__base__.__subclasses__() }}", {}),
    ("{{ question.__class__ }}", {"question": "hi"}),
    ("{{ namespace.__init__.__globals__ }}", {}),
    ("{{ range.__self__ }}", {}),
    ("{{ self._TemplateReference__context }}", {}),
    ("{{ ''|attr('__class__') }}", {}),
    ("{{ '{0.__class__.__mro__}'.format('') }}", {}),
    ("{{ '{0.__globals__}'.format(f) }}", {"f": lambda: None}),
    ("{{ f.__globals__ }}", {"f": lambda: None}),
    ("{{ items.append(1) }}", {"items": [1, 2]}),
    ("{{ data.update({'a': 1}) }}", {"data": {}}),
    ("{{ data.pop('k') }}", {"data": {"k": 1}}),
])
def test_escapes_raise_security_error(source: str, variables: dict[str, Any]) -> None:
    with pytest.raises(SecurityError) as raised:
        render(source, variables)
    assert not isinstance(raised.value, RenderLimitError)  # refused as unsafe, not as too big


def test_mutation_is_refused_and_leaves_the_input_alone() -> None:
    items = [1, 2]
    with pytest.raises(SecurityError):
        render("{% set _ = items.append(3) %}", {"items": items})
    assert items == [1, 2]


@pytest.mark.parametrize("source", ["{% include 'secrets.txt' %}", "{% import 'os' as os %}{{ os }}",
                                    "{% extends 'base.html' %}", "{% from '/etc/passwd' import x %}"])
def test_no_template_can_load_files(source: str) -> None:
    with pytest.raises(TemplateNotFound):
        render(source, {})


@pytest.mark.parametrize("name", ["lipsum", "cycler", "joiner"])
def test_helpers_that_reach_module_globals_are_removed(name: str) -> None:
    with pytest.raises(UndefinedError):
        render(f"{{{{ {name} }}}}", {})


# -- bounds -----------------------------------------------------------------------------------

BOUNDED = [
    pytest.param("{% for i in range(10**9) %}x{% endfor %}", {}, id="huge-range"),
    pytest.param("{% for i in range(1000000) %}{% endfor %}", {}, id="range-at-the-size-limit"),
    pytest.param("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}"
                 "x{% endfor %}{% endfor %}{% endfor %}", {}, id="nested-loops"),
    pytest.param("{% for a in xs %}{% for b in xs %}{% for c in xs %}{% for d in xs %}{{ a }}"
                 "{% endfor %}{% endfor %}{% endfor %}{% endfor %}", {"xs": list(range(100))},
                 RenderLimits(max_steps=20_000), id="nested-loops-over-an-input"),
    pytest.param("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", {}, id="recursive-macro"),
    pytest.param("{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}", {}, id="branching-recursion"),
    pytest.param("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}x{% endmacro %}{{ f(40) }}", {},
                 RenderLimits(max_steps=5_000), id="exponential-macro"),
    pytest.param("{{ 'a'*10**10 }}", {}, id="string-repetition"),
    pytest.param("{{ ['a']*10**9 }}", {}, id="list-repetition"),
    pytest.param("{{ 10 ** (10 ** 10) }}", {}, id="power"),
    pytest.param("{{ '%0999999999d'|format(1) }}", {}, id="percent-format-width"),
    pytest.param("{{ '%0999999999d' % 1 }}", {}, id="percent-operator-width"),
    pytest.param("{{ '{:>999999999}'.format(1) }}", {}, id="format-method-width"),
    pytest.param("{{ '{0:>{1}}'.format(1, 999999999) }}", {}, id="format-nested-width"),
    pytest.param("{{ ('{0}'*100000).format('x'*1000) }}", {}, id="format-repeated-field"),
    pytest.param("{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
                 "{% endfor %}{{ ns.s }}", {}, id="namespace-doubling-tilde"),
    pytest.param("{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
                 "{% endfor %}{{ ns.s }}", {}, id="namespace-doubling-plus"),
    pytest.param("{% set ns = namespace(s=['a']) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
                 "{% endfor %}{{ ns.s|length }}", {}, RenderLimits(max_output_chars=100_000),
                 id="namespace-doubling-list"),
    pytest.param("{{ (['x']*100000)|join('y'*1000) }}", {}, id="join-filter"),
    pytest.param("{{ ('y'*1000).join(['x']*100000) }}", {}, id="join-method"),
    pytest.param("{{ ('a'*100000).replace('a', 'b'*1000) }}", {}, id="replace-method"),
    pytest.param("{{ ('a'*100000)|replace('a', 'b'*1000) }}", {}, id="replace-filter"),
    pytest.param("{{ s.replace('', 'b'*1000) }}", {"s": "a" * 10000}, id="replace-empty"),
    pytest.param("{{ 'a'.center(9999999999) }}", {}, id="center-method"),
    pytest.param("{{ 'a'|center(9999999999) }}", {}, id="center-filter"),
    pytest.param("{{ 'a'.ljust(9999999999) }}", {}, id="ljust"),
    pytest.param("{{ 'a'.zfill(9999999999) }}", {}, id="zfill"),
    pytest.param("{{ ('a\tb'*1000).expandtabs(10**5) }}", {}, id="expandtabs"),
    pytest.param("{{ ('x\n'*1000)|indent(100000) }}", {}, id="indent-width"),
    pytest.param("{{ [1, 2]|batch(10**10, 'x')|list }}", {}, id="batch-huge-size"),
    pytest.param("{{ [1, 2]|batch(999999, 'x')|list }}", {}, id="batch-fill"),
    pytest.param("{{ range(10)|batch(3, 'x'*999999)|list }}", {}, id="batch-fill-value"),
    pytest.param("{{ data|tojson(indent=10**9) }}", {"data": {"a": 1}}, id="tojson-indent"),
    pytest.param("{{ ('<'*300000)|escape }}", {}, id="escape-growth"),
    pytest.param("{{ x }}", {"x": "a" * 1_000_001}, id="input-over-the-output-limit"),
    pytest.param("{% for i in range(600) %}{{ big }}{% endfor %}", {"big": "b" * 2000}, id="output-grows"),
    pytest.param("{{ (2 ** 2048) * (2 ** 2048) }}", {}, id="int-product"),
    pytest.param("{{ x + 1 }}", {"x": 2 ** 5000}, id="int-input-too-large"),
    pytest.param("{{ x|round(-300000) }}", {"x": 2 ** 5000}, id="filter-on-a-huge-int"),
    pytest.param("{{ ('f' * 5000)|int(base=16) }}", {}, id="int-filter-result"),
    pytest.param("{{ '{:>{}}'.format(1, '999999999') }}", {}, id="format-width-from-a-string"),
    pytest.param("{{ '{0:.{1}f}'.format(1.5, w) }}", {"w": "99999999"}, id="format-precision-from-an-argument"),
    pytest.param("{{ ('{0:>600000}' * 2).format(1) }}", {}, id="format-widths-add-up"),
    pytest.param("{{ '{a:>{w}}'.format_map(m) }}", {"m": {"a": 1, "w": 99999999}}, id="format-map-width"),
    pytest.param("{{ '%*s' % (99999999, 'x') }}", {}, id="percent-star-width"),
    pytest.param("{{ '%-*.*f' % (9, 99999999, 1.5) }}", {}, id="percent-star-precision"),
    pytest.param("{{ '%s|%s' % (s, s) }}", {"s": "a" * 600_000}, id="percent-values-add-up"),
    pytest.param("{{ '%*d'|format(999999, 1) ~ '%*d'|format(999999, 1) }}", {}, id="format-filter-star"),
    pytest.param("{{ s|wordwrap }}", {"s": "a " * MAX_SLOW_FILTER_CHARS}, id="wordwrap-input-cap"),
    pytest.param("{{ s|wordwrap(1) }}", {"s": "a" * 50_000}, id="wordwrap-long-word"),
    pytest.param("{{ s|urlize }}", {"s": "." * 2_000 + "a."}, id="urlize-punctuation-run"),
    pytest.param("{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = [ns.x, ns.x] %}"
                 "{% endfor %}{{ ns.x|length }}", {}, id="list-literal-doubling"),
    pytest.param("{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = (ns.x, ns.x) %}"
                 "{% endfor %}{{ ns.x|length }}", {}, id="tuple-literal-doubling"),
    pytest.param("{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = {'a': ns.x, 'b': ns.x} %}"
                 "{% endfor %}{{ ns.x|length }}", {}, id="dict-literal-doubling"),
    pytest.param("{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = namespace(a=ns.x, b=ns.x) %}"
                 "{% endfor %}{{ ns.x.a|length }}", {}, id="namespace-doubling"),
]


@pytest.mark.parametrize("source, variables, limits", [
    p if len(p.values) == 3 else pytest.param(*p.values, None, id=p.id) for p in BOUNDED
])
def test_limits_stop_quickly_and_small(source: str, variables: dict[str, Any], limits: RenderLimits | None) -> None:
    _, seconds, peak = _fails(source, variables, limits, expected=RenderLimitError)
    assert seconds < MAX_SECONDS, f"took {seconds:.1f} s"
    assert peak < MAX_PEAK_BYTES, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("source", [
    pytest.param("{{ ('x\n'*100000)|indent('y'*1000) }}", id="indent-string-width"),
    pytest.param("{{ ('a'*100000).translate({97: 'b'*1000}) }}", id="translate"),
    pytest.param("{{ ('x \n'*20000)|wordwrap(1, wrapstring='y'*5000) }}", id="wordwrap-wrapstring"),
    pytest.param("{{ (['a']*100)|map('center', 999999)|list|length }}", id="map-accumulates"),
])
def test_amplifying_filters_are_refused_before_they_run(source: str) -> None:
    _, seconds, peak = _fails(source, expected=RenderLimitError)
    assert peak < MAX_PEAK_BYTES, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("source", [
    pytest.param("{{ x" + " + x" * 250 + " }}", id="250-additions"),
    pytest.param("{{ x" + "+x" * 5000 + " }}", id="5000-additions"),
    pytest.param("{{ x" + "()" * 5000 + " }}", id="5000-calls"),
])
def test_template_too_deep_to_compile_raises_a_template_error(source: str) -> None:
    with pytest.raises(TemplateError):
        render(source, {"x": "a"})


def test_integers_are_bounded_by_their_bit_length() -> None:
    limit = 2 ** (MAX_INT_BITS - 2)  # estimates are upper bounds: a - a counts one bit more
    assert render("{{ (a * 2) > a }}", {"a": 2 ** (MAX_INT_BITS - 3)}) == "True"  # estimated: 4094 + 2 bits
    assert render("{{ (a // 3) > 0 }} {{ (a - a) }} {{ a % 7 }}", {"a": limit}) == f"True 0 {limit % 7}"
    for source in ("{{ a * 4 }}", "{{ a + a + a }}", "{{ a ** 2 }}", "{{ 2 ** 4096 }}", "{{ b - 1 }}"):
        with pytest.raises(RenderLimitError, match=f"{MAX_INT_BITS} bits|power"):
            render(source, {"a": limit, "b": -(2 ** MAX_INT_BITS)})


def test_bytes_are_refused() -> None:
    for source in ("{{ 'abc'.encode() }}", "{{ (1).to_bytes(4, 'big') }}"):
        with pytest.raises(SecurityError, match="bytes"):
            render(source, {})


def test_the_deadline_is_checked_before_every_call() -> None:
    """A few slow calls, each well within every other limit, stop at the deadline."""
    slow = RenderLimits(timeout_s=0.2)
    source = "{% for i in range(60) %}{{ (s|wordwrap(3))|length }}{% endfor %}"
    error, seconds, _ = _fails(source, {"s": "abcdefg " * 12_000}, slow, expected=RenderLimitError)
    assert "longer than 0.2 s" in str(error)
    assert seconds < 0.2 + 1


def test_limits_are_configurable() -> None:
    small = RenderLimits(max_output_chars=1000, max_steps=20, timeout_s=1.0)
    assert render("{{ 'a'*1000 }}", {}, small) == "a" * 1000
    _fails("{{ 'a'*1001 }}", {}, small, expected=RenderLimitError)
    assert render("{% for i in xs %}{{ i }}{% endfor %}", {"xs": list(range(10))}, small) == "0123456789"
    _fails("{% for i in xs %}{{ i }}{% endfor %}", {"xs": list(range(21))}, small, expected=RenderLimitError)


def test_deadline_stops_slow_work_within_the_step_budget() -> None:
    slow = RenderLimits(max_steps=10**9, timeout_s=0.3)
    source = "{% for i in range(1000000) %}{{ ('x'*1000)|upper|length }}{% endfor %}"
    error, seconds, _ = _fails(source, {}, slow, expected=RenderLimitError)
    assert "longer than" in str(error)
    assert seconds < 0.3 + 2


def test_budget_is_per_render() -> None:
    source = "{% for i in range(90000) %}{% endfor %}done"
    assert render(source, {}) == "done"
    assert render(source, {}) == "done"  # a second render starts with a full budget


def test_budget_is_per_thread() -> None:
    """Renders in other threads neither drain nor refill a render's budget."""
    light = "{% for i in range(30000) %}{% endfor %}{{ n }}"
    heavy = "{% for i in xs %}{% endfor %}never"

    def run(n: int) -> str:
        if n == 0:
            try:
                return render(heavy, {"xs": range(300_000)})
            except RenderLimitError:
                return "limited"
        return "".join(render(light, {"n": n}) for _ in range(3))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(8)))
    assert results == ["limited"] + [str(n) * 3 for n in range(1, 8)]


def test_a_failed_render_does_not_poison_the_next() -> None:
    with pytest.raises(RenderLimitError):
        render("{% for i in range(10**9) %}{% endfor %}", {})
    assert render("{{ a }}", {"a": "ok"}) == "ok"


# -- ordinary templates render as in Jinja ---------------------------------------------------

@pytest.mark.parametrize("source, variables, expected", [
    ("Question: {{ question }}", {"question": "How?"}, "Question: How?"),
    ("{% for p in passages %}[{{ loop.index }}] {{ p }}\n{% endfor %}", {"passages": ["a", "b"]}, "[1] a\n[2] b\n"),
    ("{% if passages %}some{% else %}none{% endif %}", {"passages": []}, "none"),
    ("{{ names|join(', ') }}", {"names": ["a", "b", "c"]}, "a, b, c"),
    ("{{ name|upper }} {{ name|length }} {{ name|title }}", {"name": "ann lee"}, "ANN LEE 7 Ann Lee"),
    ("{{ missing|default('n/a') }}", {}, "n/a"),
    ("{{ '%s has %d'|format('Ann', 3) }}", {}, "Ann has 3"),
    ("{{ '{} and {}'.format('a', 'b') }}", {}, "a and b"),
    ("{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ [1, 2, 3]|sum }}", {}, "ababab 1024 6"),
    ("{{ 'x' ~ 1 ~ 'y' }}", {}, "x1y"),
    ("{% macro item(t) %}<{{ t }}>{% endmacro %}{{ item('a') }}{{ item('b') }}", {}, "<a><b>"),
    ("{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
     {}, "10"),
    ("{%- for x in xs -%}\n  {{ x }}\n{%- endfor %}", {"xs": [1, 2]}, "12"),
    ("{{ user.name }} {{ user['age'] }}", {"user": {"name": "Ann", "age": 7}}, "Ann 7"),
    ("{{ html }}", {"html": "<b>&</b>"}, "<b>&</b>"),  # no autoescape: prompts are not HTML
    ("{{ data|tojson }}", {"data": {"b": 1, "a": [True, None]}}, '{"a": [true, null], "b": 1}'),
    ("{% for row in range(7)|batch(3, 0) %}{{ row|sum }},{% endfor %}", {}, "3,12,6,"),
    ("line one\n{{ x }}\n", {"x": 1}, "line one\n1\n"),  # the trailing newline is kept
    ("{{ 'é' ~ question|trim }}", {"question": "  ça  "}, "éça"),
    ("{{ '{:>5}|{:.2f}|{:{}}|'.format('a', 3.14159, 'b', 3) }}", {}, "    a|3.14|b  |"),
    ("{{ '{a}-{b[0]}'.format_map(m) }}", {"m": {"a": 1, "b": [2]}}, "1-2"),
    ("{{ ('<{}>'|safe).format('&') }}", {}, "<&amp;>"),
    ("{{ '%-*s|%.*f|%(x)s' % (4, 'ab', 1, 2.25, 'z') if false else '%-*s|%.*f' % (4, 'ab', 1, 2.25) }}", {},
     "ab  |2.2"),
    ("{{ '%(n)03d'|format(n=7) }} {{ '%5.1f%%'|format(12.34) }}", {}, "007  12.3%"),
    ("{{ [1, 2] + [3] }} {{ (1, 2) }} {{ {'a': [1, 2]}|tojson }}", {}, '[1, 2, 3] (1, 2) {"a": [1, 2]}'),
    ("{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }}{% endfor %}", {}, "37"),
    ("{{ 2 ** 100 }} {{ 12345678901234567890 * 98765432109876543210 }}", {},
     f"{2 ** 100} {12345678901234567890 * 98765432109876543210}"),
    ("{{ 'aaa bbb ccc'|wordwrap(4) }}", {}, "aaa\nbbb\nccc"),
    ("{{ 'see www.example.com.'|urlize }}", {}, 'see <a href="https://www.example.com" rel="noopener">'
                                                'www.example.com</a>.'),
])
def test_ordinary_templates(source: str, variables: dict[str, Any], expected: str) -> None:
    assert render(source, variables) == expected


def test_output_exactly_at_the_limit_renders() -> None:
    assert len(render("{{ x }}", {"x": "a" * 1_000_000})) == 1_000_000
    assert len(render("{{ 'a' * 1000000 }}", {})) == 1_000_000


@pytest.mark.parametrize("source, variables", [
    ("{{ missing }}", {}),
    ("{{ user.nickname }}", {"user": {"name": "Ann"}}),
    ("{% for p in passages %}{% endfor %}", {}),
    ("{{ missing ~ 'x' }}", {}),
])
def test_strict_undefined(source: str, variables: dict[str, Any]) -> None:
    with pytest.raises(UndefinedError):
        render(source, variables)


def test_syntax_errors_are_template_syntax_errors() -> None:
    for source in ("{% for p in passages %}{{ p }}", "{{ unclosed", "{% endif %}", "{% nosuchtag %}"):
        with pytest.raises(TemplateSyntaxError):
            parse(source)
        with pytest.raises(TemplateSyntaxError):
            render(source, {"passages": []})


# -- variables_used ----------------------------------------------------------------------------

@pytest.mark.parametrize("source, expected", [
    ("{{ question }}", {"question"}),
    ("{% for p in passages %}{{ loop.index }}: {{ p }}{% endfor %}", {"passages"}),
    ("{% for i in range(3) %}{{ i }}{% endfor %}{{ namespace(a=1).a }}", set()),
    ("{% set x = 1 %}{{ x }}{{ y }}", {"y"}),
    ("{% set ns = namespace(total=0) %}{% for v in values %}{% set ns.total = ns.total + v %}{% endfor %}"
     "{{ ns.total }}", {"values"}),
    ("{% macro m(a) %}{{ a }}{{ b }}{% endmacro %}{{ m(c) }}", {"b", "c"}),
    ("{{ user.name }} {{ data['key'] }} {{ items[0] }}", {"user", "data", "items"}),
    ("{% if flag %}{{ a }}{% elif other %}{{ b }}{% else %}{{ c|default(d) }}{% endif %}",
     {"flag", "a", "other", "b", "c", "d"}),
    ("{% with z = w %}{{ z }}{% endwith %}", {"w"}),
    ("{{ names|join(sep) }} {{ '%s'|format(v) }}", {"names", "sep", "v"}),
    ("{# {{ commented }} #}{% raw %}{{ raw }}{% endraw %}plain", set()),
    ("{% for k, v in mapping.items() %}{{ k }}={{ v }}{% endfor %}", {"mapping"}),
])
def test_variables_used(source: str, expected: set[str]) -> None:
    assert variables_used(parse(source)) == expected


def test_an_inputs_schema_ref_to_a_file_or_url_is_never_followed(tmp_path: Path) -> None:
    """jsonschema would read a $ref it is not given with urllib: file:// anywhere, http to any host."""
    from types import SimpleNamespace

    from promptops.templating import InputError, validate_inputs

    outside = tmp_path / "outside.json"
    outside.write_text('{"type": "integer"}')  # followed, it would refuse the string below
    for ref in (outside.as_uri(), "http://127.0.0.1:9/schema.json"):
        spec = SimpleNamespace(id="greet", inputs={"type": "object", "properties": {"name": {"$ref": ref}}})
        with pytest.raises(InputError, match="has a \\$ref promptops does not follow"):
            validate_inputs(spec, {"name": "ada"})
    local = SimpleNamespace(id="greet", inputs={"$defs": {"n": {"type": "string"}},
                                                "properties": {"name": {"$ref": "#/$defs/n"}}})
    validate_inputs(local, {"name": "ada"})
    with pytest.raises(InputError, match="is not of type 'string'"):
        validate_inputs(local, {"name": 1})
