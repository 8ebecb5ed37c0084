"""Run the promptops command line from a test: in this process, or in a child process.

``run_promptops`` calls ``promptops.cli.main(argv)`` in the test process: no interpreter start-up and
no litellm import per command (0.3 s and 3-4 s a process), and a crash fails the test with its
traceback. It gives the command what a child process would have: its own working folder, exactly the
environment it is given (else a copy of this one), standard streams of its own and an empty stdin;
afterwards the folder, the environment and the signal handlers a command may set are put back.

``run_promptops_process`` starts ``python -m promptops``: for what only a process shows (an exit by a
signal, a kill, imports, a mount namespace, an environment read at start-up). Both take the same
arguments and return a ``CliResult``: a ``subprocess.CompletedProcess`` with text stdout and stderr, how
long the command took and its JSON output. ``cli_env()`` is the environment of a user's terminal: this
one without what a CI job or a hook running the tests would set.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from promptops.cli import main

# A command that hangs in-process has no child to kill: after its timeout (default: this long) it gets a SIGINT
# (as Ctrl-C; main returns 130) and its stderr ends with where it hung. Generous: a hang is a bug to see.
HANG_S = 600.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class CliResult(subprocess.CompletedProcess[str]):
    """A finished command: returncode, stdout, stderr, and how many ``seconds`` it took."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str, seconds: float) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.seconds = seconds

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli_env() -> dict[str, str]:
    """This process's environment without what would change lint's output when the tests run in CI or a hook."""
    env = dict(os.environ)
    env.pop("GITHUB_ACTIONS", None)  # would switch the default format to github
    env.pop("GITHUB_WORKSPACE", None)  # would change what github and sarif paths are relative to
    env.pop("PRE_COMMIT", None)  # set when the tests run inside a hook: lint would refuse files outside a project
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def run_promptops(args: Sequence[str | os.PathLike[str]], cwd: Path, env: Mapping[str, str] | None = None,
                  timeout: float | None = None) -> CliResult:
    """``promptops ARGS`` run in this process (from its main thread) in ``cwd``, as ``run_promptops_process``
    would run it in a child, interrupted after ``timeout`` seconds."""
    argv = [os.fspath(arg) for arg in args]
    hung: list[str] = []
    start = time.monotonic()
    with _isolated(cwd, env), _runner().isolation() as streams:
        stdout, stderr = streams[0], streams[1]  # click 8.2 adds a third, both interleaved
        _forget_cached_state()
        with _interrupt_after(timeout or HANG_S, hung):
            code = main(argv)
        sys.stdout.flush()
        sys.stderr.flush()
        _release_what_an_exit_would()
        out, err = _text(stdout.getvalue()), _text(stderr.getvalue())  # click 8.1 closes them on leaving
    return CliResult(["promptops", *argv], code, out, err + "".join(hung), time.monotonic() - start)


def _runner() -> CliRunner:
    """A CliRunner that keeps stderr apart from stdout: click 8.2 always does, 8.1 when asked to."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        return CliRunner()


def run_promptops_process(args: Sequence[str | os.PathLike[str]], cwd: Path, env: Mapping[str, str] | None = None,
                          timeout: float | None = 180, prefix: Sequence[str] = ()) -> CliResult:
    """``python -m promptops ARGS`` in a child process (after ``prefix``, e.g. a namespace's ``unshare``)."""
    start = time.monotonic()
    done = subprocess.run([*prefix, sys.executable, "-m", "promptops", *map(os.fspath, args)], cwd=cwd,
                          env=None if env is None else dict(env), capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
    return CliResult(done.args, done.returncode, done.stdout, done.stderr, time.monotonic() - start)


@contextlib.contextmanager
def promptops_process(args: Sequence[str | os.PathLike[str]], cwd: Path,
                      env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """``python -m promptops ARGS`` started in its own session (a process group, as a terminal would start it)
    with piped text streams, for a test that signals or kills it while it runs. However the test ends, the
    group is killed if still running, and waited for."""
    process = subprocess.Popen([sys.executable, "-m", "promptops", *map(os.fspath, args)], cwd=cwd,
                               env=None if env is None else dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                               start_new_session=True)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the group outlives its leader when workers were left behind
        process.wait()
        for stream in (process.stdout, process.stderr):
            stream.close()


@contextlib.contextmanager
def _isolated(cwd: Path, env: Mapping[str, str] | None) -> Iterator[None]:
    """The working folder and the environment for one command, and this process's own put back afterwards
    (the command may add variables, litellm's import does, and `eval` sets a SIGTERM handler)."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_signals = {number: signal.getsignal(number) for number in _SIGNALS}
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for number, handler in saved_signals.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def _interrupt_after(seconds: float, hung: list[str]) -> Iterator[None]:
    """Interrupt the main thread, as Ctrl-C would, if it is still inside after ``seconds``."""
    main_thread = threading.main_thread()
    assert threading.current_thread() is main_thread, \
        "an in-process command owns the process: run it from the main thread"

    def interrupt() -> None:
        stack = "".join(traceback.format_stack(sys._current_frames()[main_thread.ident]))
        hung.append(f"\n[test] promptops hung for {seconds:.0f} s, interrupted at:\n{stack}")
        signal.pthread_kill(main_thread.ident, signal.SIGINT)

    timer = threading.Timer(seconds, interrupt)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()


def _forget_cached_state() -> None:
    """Empty promptops's memoised functions, as a new process starts with them empty: some remember what they
    found on disk (the nearest promptops.yaml of a folder), which an earlier command or test may have changed."""
    for name, module in list(sys.modules.items()):
        if name == "promptops" or name.startswith("promptops."):
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)) and hasattr(value, "cache_info"):  # lru_cache
                    value.cache_clear()


def _release_what_an_exit_would() -> None:
    """Collect the command's garbage now, as its exit would free it: a git repository object stops its
    `git cat-file` processes, a closed event loop's HTTP client closes its keep-alive connections."""
    gc.collect()


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")
