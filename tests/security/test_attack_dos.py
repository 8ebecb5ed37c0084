"""Issue 15, item 6: a pull request cannot hang or exhaust the pre-commit hook or the PR check.

Each test is an attack that hung, ran for many seconds or took hundreds of megabytes before
the fix. Anything that could hang runs in a child process with a hard timeout (and an address
space limit, so that the old code fails with a MemoryError rather than taking the machine's
memory): the suite itself never hangs, and a test fails by its timeout, time or memory.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from helpers.repo import git, git_env
from promptops.testing import StubServer

HANG_S = 20.0  # a child still running after this is a hang
# Seconds are CPU seconds: an attack burns CPU, which other work on a busy machine does not add to (wall-clock
# deadlines only stop the work earlier there).
MAX_RENDER_S = 3.0  # the render deadline is 2 s
MAX_RSS_MB = 150  # a child that renders a template peaks at about 25 MB
ADDRESS_SPACE = 1_500_000_000  # enough for an attack to show its appetite, not to take the machine's memory

# The child's own peak: VmHWM starts afresh at exec, while ru_maxrss keeps the
# peak of the process that forked it (pytest, hundreds of MB once litellm is imported).
_RENDER = textwrap.dedent("""
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))

    def peak_mb():
        try:
            with open("/proc/self/status", encoding="ascii") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
        except (OSError, StopIteration):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    from promptops.templating import render
    source, variables = json.load(sys.stdin)
    start = time.process_time()
    try:
        render(source, variables)
        error = None
    except Exception as exc:
        error = [type(exc).__name__, str(exc)]
    print(json.dumps({{"error": error, "seconds": time.process_time() - start,
                       "rss_mb": peak_mb()}}))
""").format(limit=ADDRESS_SPACE)


def _run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = HANG_S, stdin: str = "") -> tuple[subprocess.CompletedProcess[str], float]:
    """The finished child and the CPU seconds it used."""
    start = _children_cpu_s()
    try:
        done = subprocess.run(args, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout:g} s: {' '.join(args)[:200]}")
    return done, _children_cpu_s() - start


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # of the children waited for: the one just run
    return usage.ru_utime + usage.ru_stime


def _render_in_child(source: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    done, _ = _run([sys.executable, "-c", _RENDER], stdin=json.dumps([source, variables or {}]))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _lint(root: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    done, seconds = _run([sys.executable, "-m", "promptops", "lint", "--no-color", *args], cwd=root)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done, seconds


def _project(root: Path, files: dict[str, str]) -> Path:
    (root / "promptops.yaml").write_text("defaults: {model: openai/gpt-4o-mini}\n")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def _prompt(content: str) -> str:
    return ("id: attack\nmodel: {name: openai/gpt-4o-mini}\n"
            f"messages:\n  - role: user\n    content: {json.dumps(content)}\n")


# -- rendering: every template ends within the deadline, in megabytes ------------------------

SQUARE_16_TIMES = ("{% set ns = namespace(n=10**1000) %}{% for i in range(16) %}{% set ns.n = ns.n * ns.n %}"
                   "{% endfor %}{{ ns.n > 1 }}")
DOUBLE = "{% set ns = namespace(x=START) %}{% for i in range(64) %}{% set ns.x = STEP %}{% endfor %}{{ ns.x|string }}"

RENDER_ATTACKS = [
    pytest.param(SQUARE_16_TIMES, {}, id="int-squared-16-times"),
    pytest.param("{% set ns = namespace(n=3) %}{% for i in range(40000) %}{% set ns.n = ns.n + ns.n %}{% endfor %}"
                 "{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n > 0 }}", {},
                 id="int-grown-by-addition-then-squared"),
    pytest.param("{{ s|wordwrap(1)|length }}", {"s": "a" * 499_000}, id="wordwrap-499000-chars"),
    pytest.param("{{ s|urlize|length }}", {"s": "." * 30_000 + "a."}, id="urlize-backtracking"),
    pytest.param("{{ '{0:X>{1}}'.format(1, w)|length }}", {"w": "400000000"}, id="format-width-from-argument"),
    pytest.param("{{ '{0:X>{1}}'.format(1, 400000000|string)|length }}", {}, id="format-width-made-by-a-filter"),
    pytest.param("{{ ('{0:>999999}' * 400).format(1)|length }}", {}, id="format-many-wide-fields"),
    pytest.param("{{ ('{0:>{1}}'|safe).format(1, w)|length }}", {"w": "400000000"}, id="markup-format-width"),
    pytest.param("{{ ('%*d' % (400000000, 1))|length }}", {}, id="percent-star-width"),
    pytest.param("{{ ('%.*f' % (400000000, 1.0))|length }}", {}, id="percent-star-precision"),
    pytest.param("{{ (('a' * 1000000).encode() * 400)|length }}", {}, id="bytes-repetition"),
    pytest.param(DOUBLE.replace("START", "[1]").replace("STEP", "[ns.x, ns.x]"), {}, id="list-literal-doubling"),
    pytest.param(DOUBLE.replace("START", "1").replace("STEP", "namespace(a=ns.x, b=ns.x)"), {},
                 id="namespace-doubling"),
    pytest.param(DOUBLE.replace("START", "{'a': 1}").replace("STEP", "{'a': ns.x.items(), 'b': ns.x.items()}"), {},
                 id="dict-view-doubling"),
    pytest.param("{% set ns = namespace(x=[1], y=[1]) %}{% for i in range(40) %}{% set ns.x = [ns.x, ns.x] %}"
                 "{% set ns.y = [ns.y, ns.y] %}{% endfor %}{{ ns.x == ns.y }}", {}, id="comparing-doubled-lists"),
]


@pytest.mark.parametrize("source, variables", RENDER_ATTACKS)
def test_a_render_attack_is_refused_quickly_and_small(source: str, variables: dict[str, Any]) -> None:
    result = _render_in_child(source, variables)
    assert result["error"] is not None, "rendered"
    kind, message = result["error"]
    assert kind in ("RenderLimitError", "SecurityError"), result["error"]
    assert result["seconds"] < MAX_RENDER_S, f"took {result['seconds']:.1f} s: {message}"
    assert result["rss_mb"] < MAX_RSS_MB, f"peaked at {result['rss_mb']:.0f} MB: {message}"


def test_lint_reports_an_integer_bomb_as_po206_within_seconds(tmp_path: Path) -> None:
    root = _project(tmp_path, {"bomb.prompt.yaml": _prompt(SQUARE_16_TIMES)})
    done, seconds = _lint(root, "bomb.prompt.yaml")
    assert done.returncode == 1, done.stdout
    assert "bomb.prompt.yaml:5:" in done.stdout and "PO206" in done.stdout and "4096 bits" in done.stdout
    assert seconds < 10


def test_lint_reports_a_slow_wordwrap_as_po206_within_seconds(tmp_path: Path) -> None:
    root = _project(tmp_path, {"wrap.prompt.yaml": _prompt("{{ ('a' * 499000)|wordwrap(1) }}")})
    done, seconds = _lint(root, "wrap.prompt.yaml")
    assert done.returncode == 1, done.stdout
    assert "wrap.prompt.yaml:5:" in done.stdout and "PO206" in done.stdout and "wordwrap()" in done.stdout
    assert seconds < 10


# -- parsing: datasets and findings stay bounded ---------------------------------------------

SUITE = "prompt: attack\ndataset: cases.csv\n"
PROMPT = ("id: attack\nmodel: {name: openai/gpt-4o-mini}\n"
          "inputs: {type: object, properties: {q: {type: string}}}\n"
          "messages: [{role: user, content: '{{ q }}'}]\n")


@pytest.mark.parametrize("columns", [30_000, 1_000_000])
def test_a_csv_header_with_many_columns_is_refused_quickly(tmp_path: Path, columns: int) -> None:
    header = "id," + ",".join(f"c{i}" for i in range(columns))
    root = _project(tmp_path, {"attack.prompt.yaml": PROMPT, "attack.eval.yaml": SUITE,
                               "cases.csv": header + "\n" + "a" + ",x" * columns + "\n"})
    done, seconds = _lint(root, "attack.eval.yaml")
    assert done.returncode == 1, done.stdout
    assert f"cases.csv:1:1: PO505 the header has {columns + 1:,} columns; at most 1,000" in done.stdout
    assert seconds < 10


def test_a_dataset_stops_at_its_row_limit(tmp_path: Path) -> None:
    rows = "".join(f"c{i},x\n" for i in range(100_001))
    root = _project(tmp_path, {"attack.prompt.yaml": PROMPT, "attack.eval.yaml": SUITE,
                               "cases.csv": "id,q\n" + rows})
    done, _ = _lint(root, "attack.eval.yaml")
    assert done.returncode == 1, done.stdout
    assert "cases.csv:100002:1: PO505 the dataset has more than 100,000 rows" in done.stdout


def test_a_prompt_with_199000_bad_items_prints_a_bounded_report(tmp_path: Path) -> None:
    items = ",".join(["1"] * 199_000)  # 400 KB: each item breaks the schema
    root = _project(tmp_path, {"big.prompt.yaml": f"id: a\nmodel: {{name: openai/gpt-4o-mini}}\nmessages: [{items}]\n"})
    done, seconds = _lint(root, "big.prompt.yaml")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == 102, f"{len(lines):,} lines"  # 100 findings, one that counts the rest, the summary
    assert lines[0].startswith("big.prompt.yaml:3:12: PO112 messages[0]: expected object")
    assert "big.prompt.yaml:3:212: PO112 and more findings in this file, not shown" in lines[100]
    assert seconds < 10


def test_the_cap_counts_what_it_hides_in_every_format(tmp_path: Path) -> None:
    # 150 undeclared variables: every one is a finding of its own (PO202)
    content = " ".join(f"{{{{ v{i} }}}}" for i in range(150))
    root = _project(tmp_path, {"many.prompt.yaml": _prompt(content)})
    done, _ = _lint(root, "--format", "json", "many.prompt.yaml")
    findings = json.loads(done.stdout)["findings"]
    assert len(findings) == 101
    assert findings[-1]["code"] == "PO202" and findings[-1]["severity"] == "error"
    assert findings[-1]["message"].startswith("and 50 more findings in this file (PO202 x50), not shown")


def test_an_integer_too_long_to_print_is_a_finding_not_a_traceback(tmp_path: Path) -> None:
    prompt = "id: a\nmodel: {name: openai/gpt-4o-mini, params: {temperature: 0x" + "f" * 5000 + "}}\n" \
             "messages: [{role: user, content: hi}]\n"
    root = _project(tmp_path, {"int.prompt.yaml": prompt})
    done, _ = _lint(root, "int.prompt.yaml")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "int.prompt.yaml:" in done.stdout and "temperature" in done.stdout


def test_a_base_60_number_is_refused_before_its_quadratic_parse(tmp_path: Path) -> None:
    """YAML 1.1 reads 1:1:1... as one integer, a multiplication a digit: 400 KB took about 9 s."""
    prompt = "id: a\nmodel: {name: openai/gpt-4o-mini, params: {seed: " + ":".join(["1"] * 200_000) + "}}\n" \
             "messages: [{role: user, content: hi}]\n"
    root = _project(tmp_path, {"sixty.prompt.yaml": prompt})
    done, seconds = _lint(root, "sixty.prompt.yaml")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "sixty.prompt.yaml:2:" in done.stdout and "PO104" in done.stdout and "399,999 characters" in done.stdout
    assert seconds < 5


# -- eval: a model answer cannot hang the json_schema assertion ------------------------------

_EVAL_PROMPT = ("id: p\nmodel: {name: openai/gpt-4o-mini, params: {max_tokens: 20}}\n"
                "messages: [{role: user, content: hi}]\n")
_EVAL_SUITE = """\
prompt: p
gates: {pass_rate: 1.0}
cases:
  - id: one
    assert:
      - {type: json_schema, schema: {type: object, properties: {a: {type: string, pattern: "^(a|a)+$"}}}}
"""


def test_a_catastrophic_schema_pattern_fails_the_case_after_the_regex_timeout(tmp_path: Path) -> None:
    for name, text in {"promptops.yaml": "eval: {concurrency: 1}\n", "p.prompt.yaml": _EVAL_PROMPT,
                       "p.eval.yaml": _EVAL_SUITE}.items():
        (tmp_path / name).write_text(text)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "suite")
    with StubServer(default_reply='{"a": "' + "a" * 40 + '!"}') as stub:
        done, _ = _run([sys.executable, "-m", "promptops", "eval", "--all", "--no-base", "--format", "json",
                        "--api-base", stub.base_url], cwd=tmp_path, env=git_env(OPENAI_API_KEY="sk-test"), timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    [case] = json.loads(done.stdout)["suites"][0]["cases"]
    [failure] = case["head"]["attempts"][0]["failures"]
    assert failure == "json_schema: the schema's pattern /^(a|a)+$/ took longer than 1 s (catastrophic backtracking?)"


_UNIQUE = textwrap.dedent("""
    import json, time
    from promptops.evals.assertions import Answer, Assertion, evaluate
    answer = json.dumps([{"n": i} for i in range(6000)])
    start = time.process_time()
    outcome = evaluate(Assertion.from_dict({"type": "json_schema", "schema": {"type": "array", "uniqueItems": True}}),
                       Answer(answer, 1.0, 0.0), {}, None)
    print(json.dumps([outcome.passed, time.process_time() - start]))
""")


def test_unique_items_on_a_long_answer_is_linear() -> None:
    done, _ = _run([sys.executable, "-c", _UNIQUE])
    passed, seconds = json.loads(done.stdout)
    assert passed and seconds < 2, f"took {seconds:.1f} s"
