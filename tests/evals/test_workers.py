"""The eval engine across worker processes, through the real litellm path to the stub on loopback:
the same results as in one process, the global concurrency bound and the spend cap held across
workers, flat memory (calls streamed as slots free up), and a killed run that repeats no finished call."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.cli import promptops_process, run_promptops
from helpers.repo import git_env
from promptops.config import load_workspace
from promptops.evals.execute import EvalOptions, run_evaluation
from promptops.evals.runner import Call, CallEngine, CallOutcome, RunSettings
from promptops.evals.workers import WorkerPool, worker_count
from promptops.models import ModelCatalog
from promptops.report import evals as renderers
from promptops.report.progress import Progress
from promptops.resultcache import CachedResult, PendingWrites, ResultCache, call_key
from promptops.testing import StubServer

MODEL = "openai/gpt-4o-mini"
PROMPT = """\
id: num.parity
model: {name: openai/gpt-4o-mini, params: {temperature: 0, max_tokens: 20}}
inputs: {type: object, required: [n], properties: {n: {type: integer}}}
messages: [{role: user, content: "Is {{ n }} even or odd?"}]
"""


@pytest.fixture(scope="module")
def stub_server() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


@pytest.fixture
def stub(stub_server: StubServer) -> StubServer:
    stub_server.reset(responder=None, default_reply="", latency_ms=0)  # each test starts clean
    return stub_server


def parity(body: dict) -> str:
    """Right for most numbers, wrong for multiples of 7: a suite with passes and failures."""
    n = int(body["messages"][-1]["content"].split()[1])
    right = "even" if n % 2 == 0 else "odd"
    return ("odd" if right == "even" else "even") if n % 7 == 0 else right


def project(root: Path, cases: int) -> Path:
    root.mkdir()
    (root / "promptops.yaml").write_text("eval: {retries: 1}\n")
    (root / "num.prompt.yaml").write_text(PROMPT)
    rows = "".join(json.dumps({"id": f"n{i}", "vars": {"n": i}, "expected": "even" if i % 2 == 0 else "odd"}) + "\n"
                   for i in range(cases))
    (root / "cases.jsonl").write_text(rows)
    (root / "num.eval.yaml").write_text("prompt: num.parity\ndataset: cases.jsonl\n"
                                        "default_assert: [{type: equals, value: '{{ expected }}'}]\n")
    return root


def evaluate(root: Path, stub: StubServer, cache: Path, **options: object) -> list:
    ws = load_workspace(root)
    settings = {"compare": False, "run_all": True, "api_base": stub.base_url, "cache": cache, **options}
    results, _ = asyncio.run(run_evaluation(ws, ws, EvalOptions(**settings)))  # type: ignore[arg-type]
    return results


def comparable(results: list) -> dict:
    """The JSON report without what differs from run to run: measured latencies."""
    report = json.loads(renderers.render_json(results, None, "head", []))
    for suite in report["suites"]:
        for key in [key for key in suite["head"] if key.startswith("latency_")]:
            suite["head"][key] = None  # each worker's first call warms its client up, untimed
        for case in suite["cases"]:
            for attempt in case["head"]["attempts"]:
                attempt["latency_ms"] = None
    return report


def test_workers_give_the_same_results_as_one_process(stub: StubServer, tmp_path: Path) -> None:
    stub.reset(responder=parity, latency_ms=0)
    root = project(tmp_path / "p", 60)
    alone = evaluate(root, stub, tmp_path / "alone.db", workers=0)
    assert stub.calls == 60
    shared = evaluate(root, stub, tmp_path / "shared.db", workers=2)
    assert stub.calls == 120  # made again, by the workers: nothing from the first cache
    assert comparable(shared) == comparable(alone)
    head = alone[0].head
    assert head.cases == 60 and 0 < head.pass_rate < 1  # multiples of 7 fail
    with sqlite3.connect(tmp_path / "shared.db") as db:  # the workers stored every answer
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 60


def test_the_concurrency_bound_holds_across_workers(stub: StubServer, tmp_path: Path) -> None:
    stub.reset(default_reply="odd", latency_ms=30)
    root = project(tmp_path / "p", 80)
    [result] = evaluate(root, stub, tmp_path / "cache.db", workers=3, concurrency=5)
    assert result.head.calls == 80 and stub.calls == 80
    assert 1 < stub.max_in_flight <= 5


def calls(count: int, max_tokens: int) -> list[Call]:
    params = {"max_tokens": max_tokens}
    out = []
    for i in range(count):
        messages = [{"role": "user", "content": f"Write a lot #{i}"}]
        out.append(Call(call_key(MODEL, messages, params, 0), "essay", "v1", f"c{i}", 0, MODEL, messages, params))
    return out


def test_the_spend_cap_is_never_passed_across_workers(stub: StubServer, tmp_path: Path) -> None:
    stub.reset(default_reply="x" * 40_000, latency_ms=20)  # 10,001 output tokens each; up to 20,000 allowed
    worst = 20_000 * ModelCatalog().get(MODEL).price.output
    cap = 3.5 * worst
    settings = RunSettings(concurrency=4, api_base=stub.base_url, api_key="stub", max_cost_usd=cap, retries=0)

    async def run() -> list[CallOutcome]:
        with ResultCache(tmp_path / "cache.db") as cache:
            pool = WorkerPool(2, tmp_path / "cache.db", settings, {})
            async with CallEngine(cache, settings, pool=pool) as engine:
                return await engine.run_calls(calls(12, 20_000), lambda outcome: None)

    outcomes = asyncio.run(run())
    answered = [o for o in outcomes if o.error is None]
    refused = [o for o in outcomes if o.error is not None]
    assert answered and refused and all("spend cap" in o.error for o in refused)
    assert stub.calls == len(answered)
    assert sum(o.cost_usd for o in answered) <= cap


@pytest.mark.parametrize("victim", ["forked", "first"])
def test_a_worker_that_dies_fails_only_its_own_calls(stub: StubServer, tmp_path: Path, victim: str) -> None:
    """Workers are forked from the first one: whichever dies, the others finish the run and it ends."""
    stub.reset(default_reply="ok", latency_ms=50)
    settings = RunSettings(concurrency=6, api_base=stub.base_url, api_key="stub", retries=0)
    answered, killed = 0, False

    def arrived(outcome: CallOutcome) -> None:
        nonlocal answered, killed
        answered += outcome.error is None
        if answered == 10 and not killed:  # once: the lost calls that follow leave the count at 10
            killed = True
            workers = pool._workers  # the first worker, then those it forked
            os.kill(workers[1 if victim == "forked" else 0].pid, signal.SIGKILL)

    async def run() -> list[CallOutcome]:
        with ResultCache(tmp_path / "cache.db") as cache:
            async with CallEngine(cache, settings, pool=pool) as engine:
                return await engine.run_calls(calls(90, 5), arrived)

    pool = WorkerPool(3, tmp_path / "cache.db", settings, {})
    started = time.monotonic()
    outcomes = asyncio.run(run())
    lost = [o for o in outcomes if o.error is not None]
    assert len(outcomes) == 90 and 0 < len(lost) < 80, [o.error for o in lost][:3]
    assert all(o.error.startswith("not run: an eval worker process stopped") for o in lost)
    assert time.monotonic() - started < 60
    with sqlite3.connect(tmp_path / "cache.db") as db:  # every answer the run counted is stored...
        stored = {key for (key,) in db.execute("SELECT key FROM results")}
    assert {o.call.key for o in outcomes if o.error is None} <= stored
    # ...and perhaps a few the killed worker stored but never got to send (its calls in flight, at most): a
    # re-run reads those from the cache, never repeats them.
    assert len(stored) - (90 - len(lost)) <= settings.concurrency


def test_calls_are_streamed_as_slots_free_up(stub: StubServer, tmp_path: Path) -> None:
    """However many calls there are, no more than `concurrency` are taken up at once (flat memory)."""
    stub.reset(default_reply="ok", latency_ms=5)
    taken, arrived, most = 0, 0, 0

    def supply() -> Iterator[tuple[int, Call]]:
        nonlocal taken, most
        for index, call in enumerate(calls(60, 5)):
            taken += 1
            most = max(most, taken - arrived)
            yield index, call

    def done(index: int, outcome: CallOutcome) -> None:
        nonlocal arrived
        assert outcome.error is None
        arrived += 1

    async def run() -> None:
        settings = RunSettings(concurrency=3, api_base=stub.base_url, api_key="stub")
        with ResultCache(tmp_path / "cache.db") as cache:
            async with CallEngine(cache, settings) as engine:
                await engine.stream(supply(), done)

    asyncio.run(run())
    assert arrived == 60 and most <= 3 + 1  # the one being handed out waits for a slot
    assert stub.max_in_flight <= 3


def test_answers_are_committed_in_batches_before_anyone_hears_of_them(tmp_path: Path) -> None:
    rows = [CachedResult(f"k{i}", "p", "v", MODEL, f"c{i}", 0, "ok", 1, 1, 1.0, 0.0) for i in range(200)]
    heard: list[bool] = []

    async def run(cache: ResultCache, writes: PendingWrites) -> None:
        stored = [writes.store(row) for row in rows]
        for row, future in zip(rows, stored):
            # The loop's own connection reads what the writer thread committed: the row is there when heard of.
            future.add_done_callback(lambda _, key=row.key: heard.append(cache.get(key) is not None))
        await asyncio.gather(*stored)

    with ResultCache(tmp_path / "cache.db") as cache:
        writes = PendingWrites(cache)
        try:
            asyncio.run(run(cache, writes))
        finally:
            writes.flush()
        assert heard == [True] * 200
        assert 1 <= writes.commits < 20  # batched: not a transaction per answer


def test_the_event_loop_runs_on_while_another_process_holds_the_cache(tmp_path: Path) -> None:
    """The commit waits for the write lock in the writer thread; the calls' event loop never does."""
    path = tmp_path / "cache.db"
    row = CachedResult("k0", "p", "v", MODEL, "c0", 0, "ok", 1, 1, 1.0, 0.0)
    ticks: list[float] = []

    async def run(writes: PendingWrites, holder: sqlite3.Connection) -> float:
        async def tick() -> None:
            while True:
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        asyncio.get_running_loop().call_later(0.5, holder.rollback)  # the other process lets go after 0.5 s
        started = time.perf_counter()
        await writes.store(row)
        ticker.cancel()
        return time.perf_counter() - started

    with ResultCache(path) as cache:
        holder = sqlite3.connect(path)
        holder.execute("BEGIN IMMEDIATE")
        writes = PendingWrites(cache)
        try:
            waited = asyncio.run(run(writes, holder))
        finally:
            writes.flush()
            holder.close()
        assert waited >= 0.45 and cache.get("k0") is not None
        # The loop kept turning while the writer waited (blocked, it would have ticked once or twice).
        assert len(ticks) >= 10


def test_small_and_cached_runs_stay_in_one_process() -> None:
    assert worker_count(10, 16) == 0
    assert worker_count(10_000, 1) == 0  # one call at a time gains nothing from more processes
    assert worker_count(10_000, 4) == 0  # nor do a few: one process's share of a core keeps up with them
    assert worker_count(10_000, 16, requested=1) == 0
    assert worker_count(5, 16, requested=3) == 3
    assert worker_count(0, 16, requested=3) == 0  # nothing to call: no litellm import anywhere


def test_a_run_whose_calls_are_all_cached_imports_nothing_of_litellm(stub: StubServer, tmp_path: Path) -> None:
    stub.reset(responder=parity)
    root, cache = project(tmp_path / "p", 30), tmp_path / "cache.db"
    evaluate(root, stub, cache, workers=0)  # fills the cache
    code = ("import asyncio, json, sys\n"
            "from pathlib import Path\n"
            "from promptops.config import load_workspace\n"
            "from promptops.evals.execute import EvalOptions, run_evaluation\n"
            "ws = load_workspace(Path.cwd())\n"
            f"options = EvalOptions(compare=False, run_all=True, api_base={stub.base_url!r},"
            f" cache=Path({str(cache)!r}))\n"
            "[result], _ = asyncio.run(run_evaluation(ws, ws, options))\n"
            "print(json.dumps({'cached': result.head.cached_calls,"
            " 'litellm': sorted(m for m in sys.modules if m.split('.')[0] in ('litellm', 'openai'))}))\n")
    calls = stub.calls
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"cached": 30, "litellm": []} and stub.calls == calls


def count_rows(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.parametrize("workers, stop", [(2, "ctrl-c"), (0, "sigterm")])
def test_a_killed_run_repeats_no_finished_call(stub: StubServer, tmp_path: Path, workers: int, stop: str) -> None:
    stub.reset(default_reply="odd", latency_ms=40)
    root = project(tmp_path / "p", 300)
    cache = tmp_path / "cache.db"
    args = ["eval", "--no-base", "--all", "--api-base", stub.base_url, "--concurrency", "4", "--workers", str(workers),
            "--cache", cache, "--format", "json"]
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=git_env())
    with promptops_process(args, cwd=root, env=git_env()) as run:
        deadline = time.monotonic() + 120
        while count_rows(cache) < 30 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.poll() is None, "the run ended before it could be stopped"
        if stop == "ctrl-c":
            os.killpg(run.pid, signal.SIGINT)  # a terminal sends Ctrl-C to the whole process group
        else:
            run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=60)
        assert run.returncode == 130, err
        assert "Traceback" not in err and "interrupted" in err and out == ""
        with pytest.raises(ProcessLookupError):
            os.killpg(run.pid, 0)  # no worker outlives the run
    stored = count_rows(cache)
    assert 30 <= stored < 300
    before = stub.calls
    done = run_promptops(args, cwd=root, env=git_env())
    assert done.returncode == 0, done.stderr
    assert stub.calls - before == 300 - stored  # only what was not stored is asked again
    assert json.loads(done.stdout)["suites"][0]["head"]["cached_calls"] == stored


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_elsewhere() -> None:
    call = calls(1, 5)[0]
    answers = [CallOutcome(call, "ok", cached=True), CallOutcome(call, "ok"), CallOutcome(call, None, error="boom")]
    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        progress = Progress(stream)
        progress.expect(3)
        for answer in answers:
            progress(answer)
        progress.close()
        progress.close()
    assert "3/3" in terminal.getvalue() and "1 cached, 1 failed" in terminal.getvalue()
    line = log.getvalue()  # closed twice, one line: a CI log gets the summary once
    assert line.startswith("eval: 3 of 3 answers (1 from cache, 1 failed") and line.count("\n") == 1


def test_a_missing_key_is_found_by_a_worker_before_any_call(tmp_path: Path) -> None:
    root = project(tmp_path / "p", 5)
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=git_env())
    env = {k: v for k, v in git_env().items() if k not in ("OPENAI_API_KEY", "PROMPTOPS_API_BASE")}
    done = run_promptops(["eval", "--no-base", "--all", "--workers", "2"], cwd=root, env=env)
    assert done.returncode == 2 and "OPENAI_API_KEY" in done.stderr and "Traceback" not in done.stderr


def test_a_large_run_at_high_concurrency_gets_one_worker_a_core() -> None:
    cores = len(os.sched_getaffinity(0))
    assert worker_count(10_000, 16) == (min(cores, 8) if cores >= 2 else 0)
    assert worker_count(10_000, 8) == (min(cores, 8) if cores >= 2 else 0)  # never more than the calls in flight
