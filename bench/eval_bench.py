"""Eval engine speed against the project's stub server. Prints figures, is not a test.

    python bench/eval_bench.py [--cases 2000] [--latency-ms 100] [--concurrency 16] [--workers N]
                               [--memory 2000,10000]

Prints (issue 4): the eval phase's wall time as a ratio to the floor
(cases x latency / concurrency; target <= 1.15) and the whole process's
(target <= 1.3), calls per second at zero latency, peak memory (the
planning process, and its largest child: a worker process when the engine
used workers), the cached re-run time for 1,000 cases (target under 1 s), and what
confirming flips costs (issue 11): a 1,000-case base/head comparison on a model
wrong 10% of the time, with eval.confirm 2 against 0 (calls and seconds).
The eval phase is ``run_evaluation`` whole: planning, starting the workers
(their litellm import) and every call; "answers" is the part from the first
answer to the last.

The control runs the same calls with nothing but ``litellm.acompletion`` under
a semaphore, split over as many processes as the engine had workers: what
litellm itself allows on this machine, the bound under any engine built on it.

The engine uses workers only when the cores are idle: on a busy machine pass
``--workers 4`` to measure them anyway. ``--memory`` runs suites of those
sizes at zero latency and prints their peak memory: it should stay about flat.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from promptops.evals.workers import worker_count
from promptops.testing import StubServer

PROMPT = """\
id: bench.echo
model: {name: openai/gpt-4o-mini, params: {temperature: 0, max_tokens: 20}}
inputs: {type: object, required: [n], properties: {n: {type: integer}}}
messages: [{role: user, content: "Say ok for request {{ n }}"}]
"""


def make_project(root: Path, cases: int) -> None:
    root.mkdir(parents=True)
    (root / "promptops.yaml").write_text("eval: {retries: 2}\n")
    (root / "echo.prompt.yaml").write_text(PROMPT)
    rows = "".join(json.dumps({"id": f"c{i}", "vars": {"n": i}, "assert": [{"type": "contains", "value": "ok"}]}) + "\n"
                   for i in range(cases))
    (root / "cases.jsonl").write_text(rows)
    (root / "echo.eval.yaml").write_text("prompt: bench.echo\ndataset: cases.jsonl\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)


def run(root: Path, stub: StubServer, concurrency: int, cache: Path, workers: int | None) -> tuple[float, float, dict]:
    """Whole-process seconds, the eval phase's seconds (from the child's own clock), and the report."""
    code = (
        "import asyncio, json, sys, time\n"
        "from pathlib import Path\n"
        "from promptops.config import load_workspace\n"
        "from promptops.evals.execute import EvalOptions, run_evaluation\n"
        "ws = load_workspace(Path.cwd())\n"
        f"options = EvalOptions(compare=False, run_all=True, concurrency={concurrency}, api_base={stub.base_url!r},"
        f" cache=Path({str(cache)!r}), workers={workers!r})\n"
        "answers = []\n"
        "start = time.perf_counter()\n"
        "results, _ = asyncio.run(run_evaluation(ws, ws, options, lambda o: answers.append(time.perf_counter())))\n"
        "phase = time.perf_counter() - start\n"
        "import resource\n"
        "print(json.dumps({'phase': phase, 'answers': answers[-1] - answers[0] if answers else 0.0,"
        " 'maxrss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
        " 'worker_maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
        " 'pass_rate': results[0].head.pass_rate, 'cached': results[0].head.cached_calls,"
        " 'failed': sum(not a.passed for c in results[0].cases for a in c.head.attempts),"
        " 'cpu_s': sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),"
        " resource.getrusage(resource.RUSAGE_CHILDREN))),"
        " 'litellm': 'litellm' in sys.modules}))\n"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    whole = time.perf_counter() - start
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return whole, report["phase"], report


CONTROL = """\
import asyncio, json, sys, time
from promptops.evals.runner import import_litellm
litellm = import_litellm()
url, first, count, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
answers = []
async def one(slots, n):
    async with slots:
        await litellm.acompletion(model="openai/gpt-4o-mini",
                                  messages=[{"role": "user", "content": f"Say ok for request {n}"}],
                                  api_base=url, api_key="unused", num_retries=0, max_retries=0, temperature=0,
                                  max_tokens=20)
    answers.append(time.time())
async def main():
    slots = asyncio.Semaphore(concurrency)
    await asyncio.gather(*(one(slots, n) for n in range(first, first + count)))
asyncio.run(main())
print(json.dumps([answers[0], answers[-1]]))
"""


def control(stub: StubServer, cases: int, concurrency: int, processes: int) -> tuple[float, float]:
    """Whole seconds and first-to-last answer seconds of the same calls made by litellm alone."""
    shares = [(cases * i // processes, cases * (i + 1) // processes) for i in range(processes)]
    limits = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    start = time.perf_counter()
    children = [subprocess.Popen([sys.executable, "-c", CONTROL, stub.base_url, str(low), str(high - low), str(limit)],
                                 stdout=subprocess.PIPE, text=True) for (low, high), limit in zip(shares, limits)]
    spans = [json.loads(child.communicate()[0]) for child in children]
    whole = time.perf_counter() - start
    if any(child.returncode for child in children):
        sys.exit("the control run failed")
    return whole, max(last for _, last in spans) - min(first for first, _ in spans)


CONFIRMING = """\
import asyncio, json, sys, time
from pathlib import Path
from promptops.config import load_workspace
from promptops.evals.execute import EvalOptions, run_evaluation
from promptops.testing import NoisyResponder, StubServer
base, head, cache, confirm = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
noisy = NoisyResponder(lambda request: "ok", wrong="no", error_rate=0.1, seed=1)
with StubServer(responder=noisy, latency_ms=20) as stub:
    options = EvalOptions(run_all=True, api_base=stub.base_url, cache=cache, confirm=confirm, concurrency=16, workers=0)
    start = time.perf_counter()
    [result], _ = asyncio.run(run_evaluation(load_workspace(base), load_workspace(head), options))
    print(json.dumps({"seconds": time.perf_counter() - start, "calls": stub.calls,
                      "confirming": result.head.confirmation_calls + result.base.confirmation_calls,
                      "flaky": result.paired.flaky, "regressed": result.paired.regressed, "passed": result.passed}))
"""


def confirmation(tmp: Path) -> str:
    """One line: the extra calls and seconds confirmation adds to a noisy base/head comparison."""
    base, head = tmp / "confirm-base", tmp / "confirm-head"
    make_project(base, 1000)
    make_project(head, 1000)
    (head / "echo.prompt.yaml").write_text(PROMPT.replace("Say ok", "Please say ok"))  # every request differs
    runs = {}
    for confirm in (0, 2):
        done = subprocess.run([sys.executable, "-c", CONFIRMING, str(base), str(head), str(tmp / f"c{confirm}.db"),
                               str(confirm)], capture_output=True, text=True)
        if done.returncode:
            sys.exit(done.stderr[-3000:])
        runs[confirm] = json.loads(done.stdout.strip().splitlines()[-1])
    on, off = runs[2], runs[0]
    return (f"confirmation, 1,000 cases at base and head, 10% noise, 20 ms: {on['confirming']} extra calls "
            f"(+{on['confirming'] / off['calls']:.0%} calls) for {on['flaky']} flaky cases; eval phase "
            f"{on['seconds']:.2f} s against {off['seconds']:.2f} s with confirm 0 "
            f"(x{on['seconds'] / off['seconds']:.2f}); gate {'passed' if on['passed'] else 'failed'}")


def memory(report: dict) -> str:
    largest = report["worker_maxrss_kb"]
    workers = f", largest child process {largest / 1024:.0f} MB" if largest > 50_000 else ""
    return f"{report['maxrss_kb'] / 1024:.0f} MB planning process{workers}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, help="worker processes (default: the engine decides; 0: none)")
    parser.add_argument("--memory", type=lambda s: [int(n) for n in s.split(",")], default=[],
                        metavar="N1,N2", help="also print the peak memory of suites of these sizes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, StubServer(default_reply="ok") as stub:
        root = Path(tmp) / "project"
        make_project(root, args.cases)
        floor = args.cases * args.latency_ms / 1000 / args.concurrency
        stub.reset(latency_ms=args.latency_ms)
        # Decided before the run, as the engine decides it: the run itself raises the load average.
        processes = max(1, args.workers if args.workers is not None else worker_count(args.cases, args.concurrency))
        whole, phase, report = run(root, stub, args.concurrency, Path(tmp) / "latency.db", args.workers)
        print(f"{args.cases} cases, {args.latency_ms:g} ms latency, concurrency {args.concurrency}: "
              f"floor {floor:.2f} s")
        print(f"  eval phase:    {phase:6.2f} s  ratio {phase / floor:.2f}  (target <= 1.15); "
              f"answers {report['answers']:.2f} s, ratio {report['answers'] / floor:.2f}")
        print(f"  whole process: {whole:6.2f} s  ratio {whole / floor:.2f}  (target <= 1.3)")
        control_whole, control_answers = control(stub, args.cases, args.concurrency, processes)
        print(f"  control, litellm alone in {processes} process{'es' if processes > 1 else ''}: "
              f"answers {control_answers:.2f} s, ratio {control_answers / floor:.2f}; "
              f"whole {control_whole:.2f} s, ratio {control_whole / floor:.2f}")
        print(f"  peak memory:   {memory(report)}; pass rate {report['pass_rate']:.2f}, "
              f"{report['failed']} failed")
        stub.reset(latency_ms=0)
        whole0, phase0, zero = run(root, stub, args.concurrency, Path(tmp) / "zero.db", args.workers)
        print(f"zero latency: {args.cases / phase0:,.0f} calls/s in the eval phase ({whole0:.2f} s whole process); "
              f"CPU {zero['cpu_s'] * 1000 / args.cases:.1f} ms a call, all processes, start-up included")
        small = Path(tmp) / "small"
        make_project(small, 1000)
        run(small, stub, args.concurrency, Path(tmp) / "small.db", args.workers)
        calls = stub.calls
        whole_cached, phase_cached, cached = run(small, stub, args.concurrency, Path(tmp) / "small.db", args.workers)
        print(f"cached re-run, 1,000 cases: {whole_cached:.2f} s whole process ({phase_cached:.2f} s eval phase), "
              f"{stub.calls - calls} model calls, litellm imported: {cached['litellm']}  (target < 1 s)")
        print(confirmation(Path(tmp)))
        for size in args.memory:
            project = Path(tmp) / f"memory{size}"
            make_project(project, size)
            _, _, sized = run(project, stub, args.concurrency, Path(tmp) / f"memory{size}.db", args.workers)
            print(f"peak memory at {size:,} cases: {memory(sized)}")
    print(f"bench process peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
