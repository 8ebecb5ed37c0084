"""Eval engine speed against the project's stub server. Prints figures, is not a test.

    python bench/eval_bench.py [--cases 2000] [--latency-ms 100] [--concurrency 16] [--workers N]
                               [--memory 2000,10000] [--load 2] [--switch-calls 400] [--switch-rounds 4]
                               [--skip switches,workers,cache,confirm]

Prints, in one run, with the load average at its start and end (the machines are
shared: compare ratios within a run):

- the eval phase's wall time as a ratio to the floor (cases x latency /
  concurrency; target <= 1.15) and the whole process's (target <= 1.3), beside a
  control: the same calls by nothing but ``litellm.acompletion`` under a
  semaphore, with litellm's default settings, in as many processes as the engine
  used; peak memory summed over every process of the run (target < 339 MB), as
  PSS (shared pages divided among the processes sharing them) beside RSS (each
  counted once a process);
- calls per second at zero latency, and CPU milliseconds a call for promptops
  and for the control (one process each, litellm's import excluded; target:
  half the control's);
- each litellm switch for per-call work promptops never reads, alone against
  the defaults (interleaved rounds), and what the per-call work litellm has no
  switch for costs (a profile of the control); litellm's own OpenAI-compatible
  routes (``aiohttp_openai/``, ``hosted_vllm/``) measured the same way, and what
  each route keeps of what promptops reads (token counts, a 4xx's status and
  message, Retry-After, the timeout, retrying a malformed answer);
- the cached re-run of 1,000 cases (target under 1 s, litellm never imported);
- the 100 ms run in one process and with 2 and 4 workers, on the machine as it
  is and loaded by ``--load`` busy processes: what the default follows;
- what confirming flips costs (issue 11).

The eval phase is ``run_evaluation`` whole: planning, starting the workers (their
litellm import) and every call; "answers" is the part from the first answer to
the last. ``--memory`` runs suites of those sizes at zero latency and prints
their peak memory: it should stay about flat.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
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


def run(root: Path, stub: StubServer, concurrency: int, cache: Path, workers: int | None,
        preimport: bool = False) -> tuple[float, float, dict]:
    """Whole-process seconds, the eval phase's seconds (from the child's own clock), and the report.

    ``preimport``: import litellm before the clock starts, so the phase's CPU is the calls' alone.
    """
    code = (
        "import asyncio, json, resource, sys, time\n"
        "from pathlib import Path\n"
        + ("from promptops.evals.runner import import_litellm\nimport_litellm()\n" if preimport else "")
        + "def cpu():\n"
        "    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),"
        " resource.getrusage(resource.RUSAGE_CHILDREN)))\n"
        "from promptops.config import load_workspace\n"
        "from promptops.evals.execute import EvalOptions, run_evaluation\n"
        "ws = load_workspace(Path.cwd())\n"
        f"options = EvalOptions(compare=False, run_all=True, concurrency={concurrency}, api_base={stub.base_url!r},"
        f" cache=Path({str(cache)!r}), workers={workers!r})\n"
        "answers = []\n"
        "start, cpu_start = time.perf_counter(), cpu()\n"
        "results, _ = asyncio.run(run_evaluation(ws, ws, options, lambda o: answers.append(time.perf_counter())))\n"
        "phase, phase_cpu = time.perf_counter() - start, cpu() - cpu_start\n"
        "print(json.dumps({'phase': phase, 'phase_cpu_s': phase_cpu,"
        " 'answers': answers[-1] - answers[0] if answers else 0.0,"
        " 'maxrss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
        " 'worker_maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
        " 'pass_rate': results[0].head.pass_rate, 'cached': results[0].head.cached_calls,"
        " 'failed': sum(not a.passed for c in results[0].cases for a in c.head.attempts),"
        " 'cpu_s': sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),"
        " resource.getrusage(resource.RUSAGE_CHILDREN))),"
        " 'litellm': 'litellm' in sys.modules}))\n"
    )
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    with PeakMemory(child.pid) as peak:
        stdout, stderr = child.communicate()
    whole = time.perf_counter() - start
    done = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["summed_peak_mb"] = peak.summed_mb()
    report["pss_peak_mb"] = peak.pss_mb()
    return whole, report["phase"], report


class PeakMemory:
    """The peak memory of a process and all its descendants, summed over processes, two ways.

    RSS: polls /proc for the tree and keeps each process's high-water mark (VmHWM), so a worker
    that exits before the run ends still counts; pages shared between a forked worker and its
    parent (litellm's import, most of a worker) count once in each: an upper bound. PSS
    (smaps_rollup): each shared page divided among the processes that share it, summed over the
    tree at each poll; the highest sum is the memory the run really held at once.
    """

    def __init__(self, root: int, every_s: float = 0.1) -> None:
        self.root = root
        self.every_s = every_s
        self.peaks: dict[int, int] = {}
        self.pss_peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summed_mb(self) -> float:
        return sum(self.peaks.values()) / 1024

    def pss_mb(self) -> float:
        return self.pss_peak_kb / 1024

    def _poll(self) -> None:
        while not self._stop.is_set():
            pss = 0
            for pid in _descendants(self.root):
                kb = _status_kb(pid, "VmHWM:")
                if kb is not None:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), kb)
                pss += _pss_kb(pid) or 0
            self.pss_peak_kb = max(self.pss_peak_kb, pss)
            self._stop.wait(self.every_s)


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _pss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:  # gone, or not ours to read
        return None
    return None


CONTROL = """\
import asyncio, json, os, resource, sys, time
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch of the price map, as promptops
os.environ.setdefault("LITELLM_LOG", "ERROR")
import litellm
litellm.suppress_debug_info = True
url, switch, profile = sys.argv[1], sys.argv[5], sys.argv[6]
first, count, concurrency = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
model, extra, acompletion = "openai/gpt-4o-mini", {}, litellm.acompletion
exec(SWITCHES[switch])
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
def other_threads_cpu():
    # CPU of every thread but the event loop's: the executor that runs litellm's sync completion() per call
    import threading
    total = 0
    for task in os.listdir("/proc/self/task"):
        if int(task) != threading.main_thread().native_id:
            fields = open(f"/proc/self/task/{task}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")
answers = []
async def one(slots, n):
    async with slots:
        await acompletion(model=model, messages=[{"role": "user", "content": f"Say ok for request {n}"}],
                          api_base=url, api_key="unused", num_retries=0, max_retries=0, temperature=0,
                          max_tokens=20, **extra)
    answers.append(time.time())
async def main():
    global threads_cpu
    slots = asyncio.Semaphore(concurrency)
    await asyncio.gather(*(one(slots, n) for n in range(first, first + count)))
    await asyncio.sleep(0.2)  # litellm's logging worker finishes its queue: its CPU belongs to these calls
    threads_cpu = other_threads_cpu()  # before asyncio.run ends the executor's threads
profiler = None
if profile:
    import cProfile
    asyncio.run(main())  # warm: lazy imports and the first connection are not what a call costs
    profiler = cProfile.Profile()
    profiler.enable()
calls_cpu = cpu()
asyncio.run(main())  # a new loop, a new executor: its threads' CPU is all these calls'
calls_cpu = cpu() - calls_cpu
pieces = {}
if profiler is not None:
    import pstats
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = sum(tottime for _, _, tottime, _, _ in stats.values())
    for (path, _, name), (_, _, _, cumulative, _) in stats.items():
        for piece, (where, function) in PIECES.items():
            if function == name and path.endswith(where):
                pieces[piece] = pieces.get(piece, 0.0) + cumulative / total
print(json.dumps({"first": answers[0], "last": answers[-1], "calls_cpu_s": calls_cpu, "threads_cpu_s": threads_cpu,
                  "cpu_s": cpu(), "pieces": pieces}))
"""

# litellm.completion(..., acompletion=True) called on the event loop and its coroutine awaited: acompletion
# without its thread-pool hop (it runs that same completion() in an executor) and without its async @client
# wrapper (logging setup, success handlers, response metadata, exception mapping). The sync @client wrapper
# hands such a call straight to completion() with no logging object, and completion() then fails on None
# ("'NoneType' object has no attribute 'update_environment_variables'"), so the caller builds litellm's
# Logging object itself. Each redefines the ``acompletion`` the control and ROUTE_CHECK call. BARE stops
# there (ROUTE_CHECK shows what it loses); DIRECT is promptops' call (runner.completion_on_loop), which also
# maps errors as acompletion does (litellm.exception_type).
DIRECT_BARE = """\
import datetime, uuid
async def acompletion(**params):
    logging = litellm.Logging(model=params["model"], messages=params["messages"], stream=False,
                              call_type="acompletion", start_time=datetime.datetime.now(),
                              litellm_call_id=str(uuid.uuid4()), function_id="bench")
    return await litellm.completion(**params, acompletion=True, litellm_logging_obj=logging)
"""
DIRECT = """\
import functools
from promptops.evals.runner import completion_on_loop, litellm_price
acompletion = functools.partial(completion_on_loop, litellm)
"""

# Each candidate switch alone: litellm's own settings and call arguments for per-call work promptops
# never reads. The names are what the bench prints; the code runs in the control process after import.
SWITCHES = {
    "default": "",
    # promptops' own call (runner.py): acompletion with the per-attempt timeout it always passes.
    "promptops' acompletion call (timeout passed)": "extra['timeout'] = 60.0",
    "completion(acompletion=True) awaited on the loop, bare": DIRECT_BARE + "extra['timeout'] = 60.0",
    "promptops' completion_on_loop (the same, errors mapped)": DIRECT + "extra['timeout'] = 60.0",
    "no-log call argument (skip callbacks)": "extra['no-log'] = True",
    "turn_off_message_logging": "litellm.turn_off_message_logging = True",
    "disable_aiohttp_transport (httpx alone)": "litellm.disable_aiohttp_transport = True",
    "disable_end_user_cost_tracking": "litellm.disable_end_user_cost_tracking = True",
    # litellm's own OpenAI-compatible routes, chosen by the model's prefix: aiohttp_openai/ posts through its
    # aiohttp handler (no OpenAI SDK, no httpx); hosted_vllm/ through its own HTTP handler (no OpenAI SDK).
    # ROUTE_CHECK below says what each keeps of what promptops reads.
    "aiohttp_openai/ route (model prefix)": "model = 'aiohttp_openai/gpt-4o-mini'",
    "hosted_vllm/ route (model prefix)": "model = 'hosted_vllm/gpt-4o-mini'",
}

# Per-call work litellm offers no switch for: (file suffix, function) whose cumulative share of a
# profiled call the bench prints, with the milliseconds it would save.
PIECES = {
    "litellm's cost calculation (completion_cost)": ("litellm/cost_calculator.py", "completion_cost"),
    "the success handler and standard logging payload":
        ("litellm_core_utils/litellm_logging.py", "async_success_handler"),
    "response metadata (_hidden_params, cost included)":
        ("llm_response_utils/response_metadata.py", "update_response_metadata"),
    "the OpenAI SDK's request transform": ("openai/_utils/_transform.py", "async_maybe_transform"),
    "the OpenAI SDK's response parsing": ("openai/_legacy_response.py", "parse"),
    "the HTTP send (httpx and its aiohttp transport)": ("httpx/_client.py", "send"),
    "the aiohttp transport alone": ("custom_httpx/aiohttp_transport.py", "handle_async_request"),
}


# What a provider route keeps of what promptops reads, through the real litellm path against the stub: the
# provider's token counts, a 4xx's status (not retried) and message, a 429's Retry-After, the timeout, and a
# malformed answer being retried. Prints one JSON line: {check: what went wrong, or ""}.
ROUTE_CHECK = """\
import asyncio, json, sys, time
from promptops.evals.runner import _retry_after, _retryable, import_litellm
from promptops.testing import StubServer
litellm_price = (lambda litellm, response: (getattr(response, "_hidden_params", None) or {}).get("response_cost"))
from promptops.testing.server import count_tokens
litellm = import_litellm()
model, found, acompletion = sys.argv[1], {}, litellm.acompletion
exec(sys.argv[2])  # "", DIRECT_BARE or DIRECT (which also prices as promptops does without the wrapper)
QUESTION, REPLY = "hello there", "ok then"
async def ask(stub, **params):
    return await acompletion(model=model, messages=[{"role": "user", "content": QUESTION}],
                             api_base=stub.base_url, api_key="stub", num_retries=0, max_retries=0, **params)
async def failure(stub, fault, **params):
    stub.reset(faults=[fault])
    started = time.perf_counter()
    try:
        await ask(stub, **params)
    except Exception as exc:
        return exc, time.perf_counter() - started
    return None, time.perf_counter() - started
def problem(ok, otherwise):
    return "" if ok else otherwise
async def main():
    with StubServer(default_reply=REPLY) as stub:
        usage, counted = (await ask(stub)).usage, (count_tokens(QUESTION), count_tokens(REPLY))
        tokens = (usage.prompt_tokens, usage.completion_tokens)
        found["usage"] = problem(tokens == counted, f"tokens {tokens}, the stub counted {counted}")
        stub.reset(cached_tokens=1)
        details = (await ask(stub)).usage.prompt_tokens_details
        cached = getattr(details, "cached_tokens", None)
        found["cached tokens"] = problem(cached == 1, f"cached_tokens {cached}, the stub served 1")
        stub.reset(cached_tokens=0)
        await acompletion(model=model.rsplit("/", 1)[0] + "/o3-mini", messages=[{"role": "user", "content": QUESTION}],
                          api_base=stub.base_url, api_key="stub", num_retries=0, max_retries=0, timeout=5,
                          max_tokens=7, seed=3, stop=["\\n"])
        sent = {key: stub.requests[-1].get(key) for key in ("max_completion_tokens", "max_tokens", "seed", "stop")}
        found["params mapped (o3-mini max_tokens)"] = problem(
            sent == {"max_completion_tokens": 7, "max_tokens": None, "seed": 3, "stop": ["\\n"]}, f"sent {sent}")
        cost = litellm_price(litellm, await ask(stub))
        found["litellm's price (promptops' fallback)"] = problem(cost is not None and cost > 0, f"price {cost}")
        exc, _ = await failure(stub, "400")
        found["4xx status"] = problem(not _retryable(litellm, exc) and getattr(exc, "status_code", None) == 400,
                                      f"a 400 arrives as {type(exc).__name__} {getattr(exc, 'status_code', None)}"
                                      + (": retried" if _retryable(litellm, exc) else ""))
        found["typed exception (litellm.BadRequestError)"] = problem(
            isinstance(exc, litellm.BadRequestError), f"{type(exc).__module__}.{type(exc).__name__}")
        found["provider message"] = problem("stub fault: HTTP 400" in str(exc), f"only {str(exc)[:80]!r}")
        exc, _ = await failure(stub, {"kind": "429", "retry_after": 2.5})
        found["Retry-After"] = problem(_retry_after(exc) == 2.5, f"read as {_retry_after(exc)}")
        found["429 typed (litellm.RateLimitError)"] = problem(isinstance(exc, litellm.RateLimitError),
                                                              f"{type(exc).__name__}")
        exc, seconds = await failure(stub, {"kind": "timeout", "hang_s": 3}, timeout=0.5)
        found["timeout"] = problem(seconds < 1.5, f"0.5 s asked, {seconds:.1f} s waited")
        exc, _ = await failure(stub, "garbage")
        found["malformed answer retried"] = problem(exc is not None and _retryable(litellm, exc),
                                                    f"{type(exc).__name__}, not retried")
        exc, _ = await failure(stub, "disconnect")
        found["dropped connection retried"] = problem(exc is not None and _retryable(litellm, exc),
                                                      f"{type(exc).__name__}, not retried")
asyncio.run(main())
print(json.dumps(found))
"""


def route_check(model: str, call: str = "") -> str:
    """One line: what the provider route of ``model`` keeps and loses of what promptops reads.

    ``call``: code that redefines the ``acompletion`` the check calls (``DIRECT``); default litellm's.
    """
    done = subprocess.run([sys.executable, "-c", ROUTE_CHECK, model, call], capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    found = json.loads(done.stdout.strip().splitlines()[-1])
    kept = [check for check, problem in found.items() if not problem]
    lost = [f"{check} ({problem})" for check, problem in found.items() if problem]
    how = {"": "", DIRECT_BARE: " by completion(acompletion=True) awaited, bare",
           DIRECT: " by promptops' completion_on_loop"}[call]
    return f"  {model}{how}: kept {', '.join(kept) or 'nothing'}; lost {'; '.join(lost) or 'nothing'}"


def control(stub: StubServer, cases: int, concurrency: int, processes: int, switch: str = "default",
            profile: bool = False) -> dict:
    """The same calls made by litellm alone: whole seconds, first-to-last answer seconds, CPU."""
    shares = [(cases * i // processes, cases * (i + 1) // processes) for i in range(processes)]
    limits = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    code = f"SWITCHES = {SWITCHES!r}\nPIECES = {PIECES!r}\n{CONTROL}"
    start = time.perf_counter()
    children = [subprocess.Popen([sys.executable, "-c", code, stub.base_url, str(low), str(high - low), str(limit),
                                  switch, "1" if profile else ""], stdout=subprocess.PIPE, text=True)
                for (low, high), limit in zip(shares, limits)]
    spans = [json.loads(child.communicate()[0]) for child in children]
    whole = time.perf_counter() - start
    if any(child.returncode for child in children):
        sys.exit("the control run failed")
    return {"whole": whole, "answers": max(s["last"] for s in spans) - min(s["first"] for s in spans),
            "calls_cpu_s": sum(s["calls_cpu_s"] for s in spans),
            "threads_cpu_s": sum(s["threads_cpu_s"] for s in spans),
            "cpu_s": sum(s["cpu_s"] for s in spans),
            "pieces": spans[0]["pieces"]}


def switches(stub: StubServer, calls: int, rounds: int) -> list[str]:
    """Each switch alone against the default, interleaved over ``rounds`` so a load spike hits both."""
    cpu: dict[str, list[float]] = {name: [] for name in SWITCHES}
    for _ in range(rounds):
        for name in SWITCHES:
            cpu[name].append(control(stub, calls, 16, 1, name)["calls_cpu_s"] * 1000 / calls)
    default = sum(cpu["default"]) / rounds
    lines = [f"litellm switches, each alone, {calls} calls at zero latency, concurrency 16, "
             f"{rounds} interleaved rounds (CPU ms a call, import excluded):"]
    for name, figures in cpu.items():
        mean = sum(figures) / rounds
        lines.append(f"  {name:58s} {mean:5.2f} ms  x{mean / default:.2f} of default  "
                     f"({', '.join(f'{f:.2f}' for f in figures)})")
    return lines


def pieces(stub: StubServer, calls: int, per_call_ms: float, thread_ms: float) -> list[str]:
    """What litellm does per call that no switch turns off, as shares of a profiled call.

    cProfile sees the event loop's thread only: ``thread_ms`` (the executor threads' CPU a call,
    measured unprofiled) is printed beside, and the shares apply to the rest.
    """
    shares = control(stub, calls, 16, 1, "default", profile=True)["pieces"]
    loop_ms = per_call_ms - thread_ms
    lines = [f"per-call work without a switch ({per_call_ms:.2f} ms a call: {thread_ms:.2f} ms in the executor threads "
             "litellm hands every acompletion to (its sync completion() there), the rest on the loop; cProfile shares "
             f"of the loop's part over {calls} warm default calls):"]
    for piece in PIECES:
        share = shares.get(piece, 0.0)
        lines.append(f"  {piece:62s} {share:5.1%}  ~{share * loop_ms:4.2f} ms")
    return lines


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


# One process writing answers through the cache's batched writer, as a worker does: ``rows`` answers at
# ``rate`` a second, each awaiting its commit as a call does before it frees its slot.
# Processes start together at ``start`` (a wall-clock time). Prints the commits' and the waits' times.
CACHE_WRITER = """\
import asyncio, json, resource, sys, time
from pathlib import Path
from promptops.resultcache import CachedResult, PendingWrites, ResultCache, WriteConnection
path, rows, rate, start, tag = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
commit_s, waits = [], []
plain_put = WriteConnection.put_many
def timed_put(self, results):
    started = time.perf_counter()
    try:
        plain_put(self, results)
    finally:
        commit_s.append(time.perf_counter() - started)
WriteConnection.put_many = timed_put
async def answer(writes, n):
    stored = time.perf_counter()
    await writes.store(CachedResult(f"{tag}-{n}", "bench.echo", "v1", "openai/gpt-4o-mini", f"c{n}", 0,
                                    "ok " * 20, 12, 20, 100.0, 1.2e-05))
    waits.append(time.perf_counter() - stored)
async def main():
    with ResultCache(path) as cache:
        writes = PendingWrites(cache)
        time.sleep(max(0.0, start - time.time()))
        began, tasks, cpu = time.perf_counter(), [], time.process_time()
        for n in range(rows):
            await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(answer(writes, n)))
        await asyncio.gather(*tasks)
        writes.flush()
        print(json.dumps({"seconds": time.perf_counter() - began, "commits": writes.commits, "commit_s": commit_s,
                          "waits": waits, "cpu_s": time.process_time() - cpu}))
asyncio.run(main())
"""


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def cache_contention(tmp: Path, rows: int, rate: float) -> list[str]:
    """Worker processes storing answers in one cache file against each in a file of its own."""
    lines = [f"cache writers, {rows} answers at {rate:g} a second in all, each awaiting its commit (ms: commit "
             "p50/p95/max; store to committed p50/p95/max; CPU a row):"]
    for processes in (1, 2, 4):
        for shared in (True, False) if processes > 1 else (True,):
            start = time.time() + 1.0  # after every child's imports
            children = [subprocess.Popen(
                [sys.executable, "-c", CACHE_WRITER,
                 str(tmp / (f"cache-{processes}-{rate:g}.db" if shared else f"cache-{processes}-{rate:g}-{i}.db")),
                 str(rows // processes), str(rate / processes), str(start), f"w{i}"],
                stdout=subprocess.PIPE, text=True) for i in range(processes)]
            runs = [json.loads(child.communicate()[0]) for child in children]
            if any(child.returncode for child in children):
                sys.exit("a cache writer failed")
            commits = [s for run in runs for s in run["commit_s"]]
            waits = [s for run in runs for s in run["waits"]]
            where = "one file" if shared else "a file each"
            lines.append(
                f"  {processes} process{'es' if processes > 1 else '  '} {where:10s}: "
                f"{max(run['seconds'] for run in runs):5.2f} s, {sum(run['commits'] for run in runs):4d} commits; "
                f"commit {_percentile(commits, 0.5) * 1000:5.1f} / {_percentile(commits, 0.95) * 1000:5.1f} / "
                f"{max(commits) * 1000:6.1f}; waits {_percentile(waits, 0.5) * 1000:5.1f} / "
                f"{_percentile(waits, 0.95) * 1000:5.1f} / {max(waits) * 1000:6.1f}; "
                f"CPU {sum(run['cpu_s'] for run in runs) * 1000 / rows:.2f} ms")
    return lines


def memory(report: dict) -> str:
    largest = report["worker_maxrss_kb"]
    workers = f", largest child process {largest / 1024:.0f} MB" if largest > 50_000 else ""
    return (f"PSS {report['pss_peak_mb']:.0f} MB summed over processes at its peak; RSS "
            f"{report['summed_peak_mb']:.0f} MB summed, shared pages once a process "
            f"({report['maxrss_kb'] / 1024:.0f} MB planning process{workers})")


def burn(cores: int) -> list[subprocess.Popen[bytes]]:
    """Busy processes that keep ``cores`` cores loaded, as other jobs on a shared runner do."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]


def workers_table(root: Path, stub: StubServer, args: argparse.Namespace, floor: float, tmp: Path) -> list[str]:
    """The same 100 ms run in one process and with worker processes, on the machine as it is and loaded."""
    lines = [f"workers, {args.cases} cases at {args.latency_ms:g} ms, concurrency {args.concurrency} "
             "(eval phase / floor, whole process / floor, CPU s all processes):"]
    stub.reset(latency_ms=args.latency_ms)
    for load in (0, args.load):
        burners = burn(load) if load else []
        try:
            for workers in (0, 2, 4):
                whole, phase, report = run(root, stub, args.concurrency, tmp / f"w{load}-{workers}.db", workers)
                lines.append(f"  {'loaded by ' + str(load) + ' busy processes' if load else 'as the machine is':32s} "
                             f"workers {workers}: phase {phase / floor:.2f}  whole {whole / floor:.2f}  "
                             f"CPU {report['cpu_s']:.1f} s  memory: PSS {report['pss_peak_mb']:.0f} MB, "
                             f"RSS {report['summed_peak_mb']:.0f} MB")
        finally:
            for burner in burners:
                burner.kill()
                burner.wait()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, help="worker processes (default: the engine decides; 0: none)")
    parser.add_argument("--memory", type=lambda s: [int(n) for n in s.split(",")], default=[],
                        metavar="N1,N2", help="also print the peak memory of suites of these sizes")
    parser.add_argument("--load", type=int, default=2, help="busy processes for the loaded workers table")
    parser.add_argument("--switch-calls", type=int, default=400, help="calls a switch is measured over, a round")
    parser.add_argument("--switch-rounds", type=int, default=4, help="interleaved rounds of the switch table")
    parser.add_argument("--skip", type=lambda s: set(s.split(",")), default=set(), metavar="PART,...",
                        help="leave out parts: switches, workers, cache, confirm")
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp, StubServer(default_reply="ok") as stub:
        root = Path(tmp) / "project"
        make_project(root, args.cases)
        floor = args.cases * args.latency_ms / 1000 / args.concurrency
        stub.reset(latency_ms=args.latency_ms)
        # Decided before the run, as the engine decides it: the run itself raises the load average.
        processes = max(1, args.workers if args.workers is not None else worker_count(args.cases, args.concurrency))
        whole, phase, report = run(root, stub, args.concurrency, Path(tmp) / "latency.db", args.workers)
        print(f"{args.cases} cases, {args.latency_ms:g} ms latency, concurrency {args.concurrency}: "
              f"floor {floor:.2f} s; {processes} process{'es' if processes > 1 else ''} make the calls")
        print(f"  eval phase:    {phase:6.2f} s  ratio {phase / floor:.2f}  (target <= 1.15); "
              f"answers {report['answers']:.2f} s, ratio {report['answers'] / floor:.2f}")
        print(f"  whole process: {whole:6.2f} s  ratio {whole / floor:.2f}  (target <= 1.3)")
        alone = control(stub, args.cases, args.concurrency, processes)
        print(f"  control, litellm alone in {processes} process{'es' if processes > 1 else ''}: "
              f"answers {alone['answers']:.2f} s, ratio {alone['answers'] / floor:.2f}; "
              f"whole {alone['whole']:.2f} s, ratio {alone['whole'] / floor:.2f}")
        print(f"  peak memory:   {memory(report)} (target < 339 MB); pass rate {report['pass_rate']:.2f}, "
              f"{report['failed']} failed")

        stub.reset(latency_ms=0)
        whole0, phase0, _ = run(root, stub, args.concurrency, Path(tmp) / "zero.db", args.workers)
        print(f"zero latency: {args.cases / phase0:,.0f} calls/s in the eval phase ({whole0:.2f} s whole process, "
              f"{processes} process{'es' if processes > 1 else ''})")
        _, _, ours = run(root, stub, args.concurrency, Path(tmp) / "cpu.db", 0, preimport=True)
        theirs = control(stub, args.cases, args.concurrency, 1)
        ours_ms, theirs_ms = ours["phase_cpu_s"] * 1000 / args.cases, theirs["calls_cpu_s"] * 1000 / args.cases
        print(f"CPU a call, zero latency, one process, litellm's import excluded: promptops {ours_ms:.2f} ms, "
              f"control (plain litellm.acompletion, default settings) {theirs_ms:.2f} ms: "
              f"x{ours_ms / theirs_ms:.2f} (target <= 0.5)")
        print(f"  the same, whole process with start-up: promptops {ours['cpu_s'] * 1000 / args.cases:.2f} ms, "
              f"control {theirs['cpu_s'] * 1000 / args.cases:.2f} ms")
        if "switches" not in args.skip:
            print("\n".join(switches(stub, args.switch_calls, args.switch_rounds)))
            print("\n".join(pieces(stub, args.switch_calls, theirs_ms, theirs["threads_cpu_s"] * 1000 / args.cases)))
            print("what each route keeps of what promptops reads (through litellm against the stub):")
            for model in ("openai/gpt-4o-mini", "aiohttp_openai/gpt-4o-mini", "hosted_vllm/gpt-4o-mini"):
                print(route_check(model))
            for call in (DIRECT_BARE, DIRECT):
                print(route_check("openai/gpt-4o-mini", call))

        small = Path(tmp) / "small"
        make_project(small, 1000)
        run(small, stub, args.concurrency, Path(tmp) / "small.db", args.workers)
        calls = stub.calls
        # Three runs: a short process's wall time on a shared machine is mostly its waits for a core, so the
        # CPU it used is printed beside (the whole process's, start-up and imports included).
        reruns = [run(small, stub, args.concurrency, Path(tmp) / "small.db", args.workers) for _ in range(3)]
        wholes = ", ".join(f"{whole:.2f}" for whole, _, _ in reruns)
        phases = ", ".join(f"{phase:.2f}" for _, phase, _ in reruns)
        cpus = ", ".join(f"{report['cpu_s']:.2f}" for _, _, report in reruns)
        print(f"cached re-run, 1,000 cases, 3 runs: {wholes} s whole process ({phases} s eval phase; CPU {cpus} s), "
              f"{stub.calls - calls} model calls, litellm imported: {any(r['litellm'] for _, _, r in reruns)}  "
              "(target < 1 s)")
        if "workers" not in args.skip:
            print("\n".join(workers_table(root, stub, args, floor, Path(tmp))))
            stub.reset(latency_ms=0)
        if "cache" not in args.skip:
            pace = args.concurrency * 1000 / args.latency_ms  # answers a second at the floor
            for rate in (pace, 5 * pace):
                print("\n".join(cache_contention(Path(tmp), args.cases, rate)))
        if "confirm" not in args.skip:
            print(confirmation(Path(tmp)))
        for size in args.memory:
            project = Path(tmp) / f"memory{size}"
            make_project(project, size)
            _, _, sized = run(project, stub, args.concurrency, Path(tmp) / f"memory{size}.db", args.workers)
            print(f"peak memory at {size:,} cases: {memory(sized)}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
