"""Progress of an eval run on standard error: a live bar on a terminal, sparse plain lines in CI logs."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from promptops.model.evals import CallOutcome


class Progress:
    """Counts answers as they arrive; never writes to standard output (reports go there).

    On a terminal: a rich progress bar with done/total, cached, failed, rate and ETA. Elsewhere
    (CI logs): a plain line every PLAIN_EVERY_S seconds and one at the end.
    """

    PLAIN_EVERY_S = 5.0  # a CI log wants a heartbeat, not a line per call

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.total: int | None = None
        self.done = self.cached = self.failed = 0
        self.started = self.last_line = time.monotonic()
        self._bar: Any = None
        self._task: Any = None
        self._closed = False

    def expect(self, total: int) -> None:
        """The number of answers the run will produce (run_evaluation says so before the first, and
        again when confirmation adds calls)."""
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)
        elif self.live and total:
            self._start_bar(total)

    def __call__(self, outcome: CallOutcome) -> None:
        self.done += 1
        self.cached += outcome.cached
        self.failed += outcome.error is not None
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, cached=self.cached, failed=self.failed,
                             rate=self._rate())
            return
        now = time.monotonic()
        if not self.live and now - self.last_line >= self.PLAIN_EVERY_S:
            self.last_line = now
            print(f"eval: {self._summary()}", file=self.stream, flush=True)

    def _summary(self) -> str:
        of = f" of {self.total}" if self.total is not None else ""
        rate = f", {self._rate()}" if self._rate() else ""
        return f"{self.done}{of} answers ({self.cached} from cache, {self.failed} failed{rate})"

    def _rate(self) -> str:
        """Model answers per second so far (answers from the cache take no time worth a rate)."""
        elapsed = time.monotonic() - self.started
        answered = self.done - self.cached
        return f"{answered / elapsed:.0f}/s" if elapsed > 0 and answered else ""

    def _start_bar(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        self._bar = Bar(
            TextColumn("eval"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[cached]} cached, {task.fields[failed]} failed"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=Console(file=self.stream), transient=False,
        )
        self._task = self._bar.add_task("eval", total=total, cached=0, failed=0, rate="")
        self._bar.start()

    def close(self) -> None:
        """Stop the bar, or print the last plain line; once (later calls do nothing)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.done and not self._closed:
            print(f"eval: {self._summary()}", file=self.stream, flush=True)
        self._closed = True
