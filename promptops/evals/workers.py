"""Worker processes for big eval runs: litellm's own work per call (building the request, parsing
and pricing the answer, its logging) keeps one core busy long before a provider's latency is the
limit, so a big run spreads its calls over one process per core.

The parent (the process that plans the run) keeps the global concurrency bound, the provider
limits and the spend budget (``runner.CallEngine``); it hands each call to the worker with the
fewest calls in flight and gets the outcome back as soon as it is known. A worker makes the call
through litellm with retries, stores the answer in the result cache itself (WAL: several
writers), and only then reports it, so a finished call is stored whoever is killed.

Workers are started with ``subprocess`` (not fork: litellm's native runtime does not survive a
fork, and the parent never imports litellm), each with one end of a socket pair; messages are
length-prefixed pickles between a process and its own child. A worker ignores Ctrl-C (the whole
process group gets it): the parent decides, then closes the socket and sends SIGTERM, and the
worker cancels what is in flight, stores what has finished and exits. A parent that dies of any
cause closes the socket too.

    python -m promptops.evals.workers FD   (started by WorkerPool, not by hand)
"""

from __future__ import annotations

import asyncio
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

from promptops.evals.cache import PendingWrites, ResultCache
from promptops.evals.runner import Call, CallOutcome, LocalCaller, RunSettings, describe_error, import_litellm
from promptops.models import ModelCatalog

MIN_CALLS = 200  # below this many calls, starting workers (each imports litellm: seconds) costs more than it saves
MAX_WORKERS = 8
STOP_TIMEOUT_S = 10.0


def worker_count(calls: int, concurrency: int, requested: int | None = None) -> int:
    """How many worker processes a run of ``calls`` uncached calls should use; 0: run in this process."""
    if not calls:
        return 0  # a cached run: never start anything that imports litellm
    if requested is not None:
        return requested if requested > 1 else 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # Cores other programs keep busy do nothing for us: on a machine already this loaded, more processes
    # only add their start-up (each imports litellm) to the queue for the same cores. The load average
    # trails by a minute (what ran just before, pip or a previous run, still shows), so only a machine
    # with less than a whole core free stays in one process.
    free = cores - os.getloadavg()[0]
    if calls < MIN_CALLS or free < 1.0 or concurrency < 2:
        return 0
    return min(cores, concurrency, MAX_WORKERS)


def _send(writer: asyncio.StreamWriter, message: tuple[Any, ...]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(len(data).to_bytes(4, "big") + data)


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
    process: subprocess.Popen[bytes]
    sock: socket.socket
    writer: asyncio.StreamWriter | None = None
    reading: asyncio.Task[None] | None = None
    waiting: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    alive: bool = True


class WorkerPool:
    """``count`` worker processes, started at once (their litellm imports overlap the parent's planning)."""

    def __init__(self, count: int, cache_path: Path, settings: RunSettings, pricing: dict[str, Any]) -> None:
        # What a worker needs: the cache, how to call (retries, timeouts, api_base), how to price.
        self._init = (str(cache_path), replace(settings, budget=None, engine=None), pricing)
        self._ids = itertools.count()
        self._workers = [self._spawn() for _ in range(count)]
        self._connecting: asyncio.Task[None] | None = None

    @staticmethod
    def _spawn() -> _Worker:
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        process = subprocess.Popen([sys.executable, "-m", "promptops.evals.workers", str(theirs.fileno())],
                                   pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL,  # litellm may print banners: never into our report
                                   env=env)
        theirs.close()
        return _Worker(process, ours)

    async def _connect(self) -> None:
        for worker in self._workers:
            reader, worker.writer = await asyncio.open_connection(sock=worker.sock)
            worker.reading = asyncio.create_task(self._read(worker, reader))
            _send(worker.writer, ("init", -1, self._init))

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        while (message := await _receive(reader)) is not None:
            _, ident, payload = message
            future = worker.waiting.pop(ident, None)
            if future is not None and not future.done():
                future.set_result(payload)
        worker.alive = False
        code = worker.process.poll()
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
        try:
            return CallOutcome(call, *await self._ask("call", call))
        except _WorkerGone as gone:
            return CallOutcome(call, None, error=f"not run: {gone}")

    async def missing_credentials(self, models: set[str]) -> str | None:
        try:
            return await self._ask("check", sorted(models))  # type: ignore[no-any-return]
        except _WorkerGone:
            return None  # nobody left to ask: each call fails, saying why

    async def aclose(self) -> None:
        """Stop every worker: each stores what it has finished, then exits; wait for that.

        SIGTERM, not only the closed socket: a worker still importing litellm has stored nothing
        and may stop at once rather than after its import.
        """
        for worker in self._workers:
            if worker.writer is not None:
                worker.writer.close()
            else:
                worker.sock.close()
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in self._workers:
            try:
                await asyncio.wait_for(asyncio.to_thread(worker.process.wait), STOP_TIMEOUT_S)
            except asyncio.TimeoutError:
                worker.process.kill()
            if worker.reading is not None:
                worker.reading.cancel()


class _WorkerGone(Exception):
    pass


# -- the worker's side -----------------------------------------------------------


async def _serve(sock: socket.socket) -> None:
    import_litellm()  # first, while the parent is still planning
    reader, writer = await asyncio.open_connection(sock=sock)
    init = await _receive(reader)
    if init is None:
        return
    cache_path, settings, pricing = init[2]
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
            caller.writes.flush()


async def _answer(caller: LocalCaller, writer: asyncio.StreamWriter, ident: int, call: Call) -> None:
    outcome = await caller.call(call)
    # Reported once stored (with whatever else arrived in this turn): a call the parent counts as done is kept.
    caller.writes.after_commit(lambda: _send(writer, ("outcome", ident, _figures(outcome))))


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the whole group: the parent stops us
    try:
        asyncio.run(_serve(socket.socket(fileno=int(argv[0]))))
    except Exception as exc:  # a one-line reason on stderr; the parent fails the calls it had given us
        print(f"promptops eval worker: {describe_error(exc)}", file=sys.stderr, flush=True)
        os._exit(1)
    # Everything is stored and closed: skip the interpreter's teardown of litellm (about half a second).
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
