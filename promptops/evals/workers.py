"""Worker processes for big eval runs: litellm's own work per call (building the request, parsing
and pricing the answer, its logging) keeps one core busy long before a provider's latency is the
limit, so a big run spreads its calls over worker processes, two per core: a worker's event loop
queues an arrived answer behind other calls' work, and the kernel interleaves more processes more
finely than one loop interleaves its calls.

The parent (the process that plans the run) keeps the global concurrency bound, the provider
limits and the spend budget (``runner.CallEngine``); it hands each call to the worker with the
fewest calls in flight and gets the outcome back as soon as it is known. A worker makes the call
through litellm with retries, stores the answer in the result cache itself (WAL: several
writers), and only then reports it, so a finished call is stored whoever is killed. An answer it
cannot store (a full disk, a read-only or locked cache) is reported as that failure, never as
an answer: the parent stops the run.

Importing litellm costs a worker seconds of CPU, so it is paid once: the parent (which never
imports litellm) starts one worker with ``subprocess``, and that worker, once litellm is imported
and before it has made a call or started a thread (its first call starts threads, which a fork
would not carry), forks the others; they share the imported modules' memory. Each worker talks to
the parent over its own socket pair (the forked ones' parent ends travel back over the first
worker's socket); messages are length-prefixed pickles. A worker ignores Ctrl-C (the whole process
group gets it): the parent decides, then closes the sockets and sends SIGTERM, and each worker
cancels what is in flight, stores what has finished and exits; the first waits for the others
first. A parent that dies of any cause closes the sockets too.

    python -m promptops.evals.workers FD   (started by WorkerPool, not by hand)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import pickle
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from promptops.evals.runner import LocalCaller, RunSettings, describe_error, import_litellm
from promptops.model.evals import Call, CallOutcome, Failure
from promptops.models import ModelCatalog
from promptops.resultcache import CacheError, PendingWrites, ResultCache

MIN_CALLS = 200  # below this many calls, starting workers (each imports litellm: seconds) costs more than it saves
MIN_CONCURRENCY = 8  # fewer calls in flight than this need a fraction of a core: one process keeps up
MAX_WORKERS = 8
STOP_TIMEOUT_S = 10.0


def worker_count(calls: int, concurrency: int, requested: int | None = None) -> int:
    """How many worker processes a run of ``calls`` uncached calls should use; 0: run in this process."""
    if not calls:
        return 0  # a cached run: never start anything that imports litellm
    if sys.platform != "linux":
        # Workers fork after importing litellm; on macOS a process that has loaded system frameworks (a
        # proxy lookup does) may crash in a forked child, and Windows cannot fork: calls stay here there.
        return 0
    if requested is not None:
        return requested if requested > 1 else 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # Measured (eval_bench.py, README Speed): at concurrency 16 workers beat one process on a busy
    # machine too (phase/floor 1.93 against 2.53 at load 8-16, 3.12 against 6.50 with two more busy
    # processes): each process gets its share of contended cores. They cost 22-57% more CPU, so below
    # MIN_CONCURRENCY, where one process's share keeps up with the calls, the calls stay here. One a
    # core: in one run two were as fast as four (1.41 against 1.54) in 266 MB of memory against 342.
    if calls < MIN_CALLS or cores < 2 or concurrency < MIN_CONCURRENCY:
        return 0
    return min(cores, concurrency, MAX_WORKERS)


def _frame(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(4, "big") + data


def _send(writer: asyncio.StreamWriter, message: tuple[Any, ...]) -> None:
    writer.write(_frame(message))


async def _receive(reader: asyncio.StreamReader) -> Any:
    """The next message, or None when the other side has closed."""
    try:
        header = await reader.readexactly(4)
        return pickle.loads(await reader.readexactly(int.from_bytes(header, "big")))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def _figures(outcome: CallOutcome) -> tuple[Any, ...]:
    """An outcome without its call (the parent has it): what travels back."""
    return tuple(getattr(outcome, f.name) for f in fields(outcome)[1:])


# -- the parent's side -----------------------------------------------------------


@dataclass
class _Worker:
    pid: int
    sock: socket.socket
    process: subprocess.Popen[bytes] | None = None  # the first worker; the others are its children
    writer: asyncio.StreamWriter | None = None
    reading: asyncio.Task[None] | None = None
    waiting: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    alive: bool = True


class WorkerPool:
    """``count`` worker processes: the first is started at once (its litellm import overlaps the parent's
    planning) and forks the others when its import is done."""

    def __init__(self, count: int, cache_path: Path, settings: RunSettings, pricing: dict[str, Any]) -> None:
        # What a worker needs: the cache, how to call (retries, timeouts, api_base), how to price.
        init = (str(cache_path), replace(settings, budget=None, engine=None), pricing, count)
        self._ids = itertools.count()
        self._count = count
        self._first = self._spawn(init)
        self._workers = [self._first]
        self._connecting: asyncio.Task[None] | None = None

    @staticmethod
    def _spawn(init: tuple[Any, ...]) -> _Worker:
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        process = subprocess.Popen([sys.executable, "-m", "promptops.evals.workers", str(theirs.fileno())],
                                   pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL,  # litellm may print banners: never into our report
                                   env=env)
        theirs.close()
        ours.sendall(_frame(("init", -1, init)))  # read once litellm is imported, before the forks
        return _Worker(process.pid, ours, process)

    async def _connect(self) -> None:
        """Receive the forked workers' sockets from the first worker, then listen to every worker."""
        try:
            pids, fds = await _receive_fds(self._first.sock, self._count)
        except OSError:  # the first worker died while importing (its reason is on stderr)
            pids, fds = [], []
        self._workers += [_Worker(pid, socket.socket(fileno=fd)) for pid, fd in zip(pids, fds)]
        for worker in self._workers:
            reader, worker.writer = await asyncio.open_connection(sock=worker.sock)
            worker.reading = asyncio.create_task(self._read(worker, reader))

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        while (message := await _receive(reader)) is not None:
            kind, ident, payload = message
            future = worker.waiting.pop(ident, None)
            if future is None or future.done():
                continue
            if kind == "cache-error":
                future.set_exception(CacheError(payload))
            else:
                future.set_result(payload)
        worker.alive = False
        code = worker.process.poll() if worker.process is not None else None
        gone = _WorkerGone("an eval worker process stopped" + (f" (exit code {code})" if code is not None else ""))
        for future in worker.waiting.values():  # calls it never finished: failed, not stored, run again next time
            if not future.done():
                future.set_exception(gone)
                future.exception()  # a run being stopped awaits none of them: not an error to report
        worker.waiting.clear()

    async def _ask(self, kind: str, payload: Any) -> Any:
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect())
        await asyncio.shield(self._connecting)  # every caller waits for the one connection
        alive = [w for w in self._workers if w.alive]
        if not alive:
            raise _WorkerGone("every eval worker process has exited")
        worker = min(alive, key=lambda w: len(w.waiting))
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        worker.waiting[ident] = future
        assert worker.writer is not None
        _send(worker.writer, (kind, ident, payload))
        return await future

    async def execute(self, call: Call) -> CallOutcome:
        """The call's outcome from a worker; raises CacheError when the worker could not store its answer."""
        try:
            return CallOutcome(call, *await self._ask("call", call))
        except _WorkerGone as gone:
            return CallOutcome(call, None, error=f"not run: {gone}", failure=Failure.NO_ANSWER)

    async def missing_credentials(self, models: set[str]) -> str | None:
        try:
            return await self._ask("check", sorted(models))  # type: ignore[no-any-return]
        except _WorkerGone:
            return None  # nobody left to ask: each call fails, saying why

    async def aclose(self) -> None:
        """Stop every worker: each stores what it has finished, then exits; wait for that.

        SIGTERM, not only the closed socket: a worker still importing litellm has stored nothing
        and may stop at once rather than after its import. The first worker exits last (it waits
        for the others it forked), so waiting for it is waiting for all.
        """
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        for worker in self._workers:
            if worker.writer is not None:
                worker.writer.close()
            else:
                worker.sock.close()
            _signal(worker.pid, signal.SIGTERM)
        assert self._first.process is not None
        try:
            await asyncio.wait_for(asyncio.to_thread(self._first.process.wait), STOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            for worker in self._workers:
                _signal(worker.pid, signal.SIGKILL)
        for worker in self._workers:
            if worker.reading is not None:
                worker.reading.cancel()


async def _receive_fds(sock: socket.socket, count: int) -> tuple[list[int], list[int]]:
    """The first worker's one message with file descriptors: the forked workers' pids and sockets."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()

    def wake() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await readable
    finally:
        loop.remove_reader(sock.fileno())
    data, fds, _, _ = socket.recv_fds(sock, 65536, count)
    if not data:
        raise ConnectionError("the first eval worker closed its socket")
    return pickle.loads(data), fds


def _signal(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # gone already
        os.kill(pid, number)


class _WorkerGone(Exception):
    pass


# -- the worker's side -----------------------------------------------------------


async def _serve(sock: socket.socket, init: tuple[Any, ...]) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)
    cache_path, settings, pricing, _ = init
    # SIGTERM ends the input as a closed socket does: one way out, through the clean-up below.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, reader.feed_eof)
    calls: set[asyncio.Task[None]] = set()
    with ResultCache(Path(cache_path)) as cache:
        caller = LocalCaller(settings, ModelCatalog(pricing), PendingWrites(cache))
        try:
            while (message := await _receive(reader)) is not None:
                kind, ident, payload = message
                if kind == "check":
                    _send(writer, ("checked", ident, caller.missing_credentials(set(payload))))
                    continue
                task = asyncio.create_task(_answer(caller, writer, ident, payload))
                calls.add(task)
                task.add_done_callback(calls.discard)
        finally:
            for task in calls:
                task.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            try:
                caller.writes.flush()
            except CacheError as exc:  # answers the parent was never told of (it stopped waiting): say so
                print(f"promptops eval worker: {exc}", file=sys.stderr, flush=True)


async def _answer(caller: LocalCaller, writer: asyncio.StreamWriter, ident: int, call: Call) -> None:
    # caller.call returns once the answer is stored: a call the parent counts as done is kept.
    try:
        outcome = await caller.call(call)
    except CacheError as exc:
        _send(writer, ("cache-error", ident, str(exc)))
        return
    _send(writer, ("outcome", ident, _figures(outcome)))


def _receive_blocking(sock: socket.socket) -> Any:
    """The parent's first message, read before any event loop exists (forking needs none running)."""
    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the parent closed the socket")
            data += chunk
        return data

    return pickle.loads(exactly(int.from_bytes(exactly(4), "big")))


def _load_openai_client_modules() -> None:
    """Import what litellm's first call through the OpenAI SDK imports (OpenAI, Azure and every
    OpenAI-compatible server take that path): the SDK loads its resources and types lazily, some
    500 modules, which would otherwise cost each forked worker as much again on its first call."""
    import openai  # litellm's own dependency

    client = openai.AsyncOpenAI(api_key="unused", base_url="http://127.0.0.1:9")  # makes no request
    _ = client.chat.completions.create, client.embeddings.create


def _fork_workers(control: socket.socket, count: int) -> tuple[socket.socket, list[int]]:
    """Fork ``count - 1`` more workers; send their sockets' parent ends to the parent.

    Returns the socket this process serves and the pids it must wait for (none in a forked worker).
    """
    parent_ends: list[socket.socket] = []
    pids: list[int] = []
    for _ in range(count - 1):
        parent_end, worker_end = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the new worker keeps only its own socket
            for other in (control, parent_end, *parent_ends):
                other.close()
            return worker_end, []
        worker_end.close()
        parent_ends.append(parent_end)
        pids.append(pid)
    socket.send_fds(control, [pickle.dumps(pids)], [end.fileno() for end in parent_ends])
    for end in parent_ends:
        end.close()
    return control, pids


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the whole group: the parent stops us
    children: list[int] = []
    try:
        control = socket.socket(fileno=int(argv[0]))
        import_litellm()  # first, while the parent is still planning, and once for every worker
        _load_openai_client_modules()
        _, _, init = _receive_blocking(control)
        # The collector writes into every object it scans: after a fork that copies the shared pages of
        # litellm's modules into each worker. Frozen objects are never scanned, so the pages stay shared.
        gc.freeze()
        sock, children = _fork_workers(control, init[3])
        asyncio.run(_serve(sock, init))
    except ConnectionError:  # the parent stopped before needing us
        pass
    except Exception as exc:  # a one-line reason on stderr; the parent fails the calls it had given us
        print(f"promptops eval worker: {describe_error(exc)}", file=sys.stderr, flush=True)
        os._exit(1)
    for pid in children:  # the first worker exits last, so the parent waits for one process
        os.waitpid(pid, 0)
    # Everything is stored and closed: skip the interpreter's teardown of litellm (about half a second).
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
