"""After every test, and after every test module, nothing they started is still running: no thread, no process.

A test that fails half-way must still stop the stub servers, fake GitHub servers and processes it
started (fixtures and ``with`` blocks do); one that does not errors at teardown, naming what was left,
and its processes are killed so that the next test starts clean. The module check runs once the
module's fixtures are torn down, so it also catches a fixture that forgets to stop what it started.

Processes are found on Linux through /proc: this process's children, and every process whose
environment carries this test run's mark (set here, so inherited by everything the tests start,
including grandchildren a killed parent left behind). Threads are those started meanwhile, except the
long-lived pools that libraries keep for the whole process, and the connections of a stub or fake
GitHub server that a longer-lived fixture runs (clients keep connections alive; stopping the server
closes them). A module-scoped fixture that keeps starting processes in the background while its tests
run (``helpers.lint.CliPool``) marks them with BACKGROUND: only the module check looks at those.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MARK = "PROMPTOPS_TEST_RUN"
os.environ[MARK] = str(os.getpid())
_MARK_BYTES = f"\0{MARK}={os.environ[MARK]}\0".encode()
BACKGROUND = "PROMPTOPS_TEST_BACKGROUND"  # set to "1" in the environment of a module fixture's background process
_BACKGROUND_BYTES = f"\0{BACKGROUND}=1\0".encode()
GRACE_S = 5.0  # a server or process being stopped may take a moment to be gone
# Helpers that libraries start once, on first use, and keep for the whole process: the worker threads of
# process-wide executors (asyncio's default one, litellm's logging) and multiprocessing's resource tracker.
_POOLED = re.compile(r"^(ThreadPoolExecutor-\d+_\d+|asyncio_\d+|litellm-logging_\d+)$")
_PROCESS_WIDE = ("from multiprocessing.resource_tracker import main", "from multiprocessing.forkserver import main")


@pytest.fixture(scope="module", autouse=True)
def nothing_left_running_by_the_module() -> Iterator[None]:
    yield from _nothing_left_running("the module and its fixtures", background=True)


@pytest.fixture(autouse=True)
def nothing_left_running() -> Iterator[None]:
    yield from _nothing_left_running("the test", background=False)


def _nothing_left_running(who: str, background: bool) -> Iterator[None]:
    threads, processes = set(threading.enumerate()), _test_processes(background)
    yield
    servers = {t.name for t in threads}  # a server that was already running owns the threads of its connections

    def left() -> tuple[list[threading.Thread], dict[int, str]]:
        return ([t for t in threading.enumerate() if t not in threads and t.is_alive() and not _POOLED.match(t.name)
                 and t.name.removesuffix(" connection") not in servers],
                {pid: command for pid, command in _test_processes(background).items() if pid not in processes})

    deadline = time.monotonic() + GRACE_S
    left_threads, left_processes = left()
    while (left_threads or left_processes) and time.monotonic() < deadline:
        time.sleep(0.05)
        left_threads, left_processes = left()
    for pid in left_processes:
        with contextlib.suppress(OSError):  # gone meanwhile
            os.kill(pid, signal.SIGKILL)
    problems = [f"thread {t.name!r} ({t.__class__.__name__})" for t in left_threads]
    problems += [f"process {pid}: {command}" for pid, command in left_processes.items()]
    if problems:
        pytest.fail(f"{who} left these running (a fixture or a with block must stop them, also when a test "
                    "fails; the processes are now killed):\n  " + "\n  ".join(problems), pytrace=False)


def _test_processes(background: bool) -> dict[int, str]:
    """Live processes of this test run (pid: command line), without this one, and without those marked
    BACKGROUND unless ``background``; none where there is no /proc."""
    me, found = os.getpid(), {}
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            stat = (entry / "stat").read_text()
            state, parent = stat[stat.rindex(")") + 2:].split()[:2]
            if state in ("Z", "X"):  # exited: nothing runs (the parent reaps it)
                continue
            environ = b"\0" + (entry / "environ").read_bytes()
            if int(parent) != me and _MARK_BYTES not in environ:
                continue
            if not background and _BACKGROUND_BYTES in environ:
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not any(helper in command for helper in _PROCESS_WIDE):
                found[int(entry.name)] = command[:200]
        except (OSError, ValueError):
            continue  # gone, or not ours to read
    return found
