"""Progress of an eval run on standard error: a live line on a terminal, sparse plain lines in CI logs."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from promptops.evals.runner import CallOutcome


class Progress:
    """Counts answers as they arrive; never writes to standard output (reports go there)."""

    PLAIN_EVERY_S = 5.0  # a CI log wants a heartbeat, not a line per call

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.done = self.cached = self.failed = 0
        self.last_line = 0.0
        self._console: Any = None

    def __call__(self, outcome: CallOutcome) -> None:
        self.done += 1
        self.cached += outcome.cached
        self.failed += outcome.error is not None
        now = time.monotonic()
        if self.live:
            self._live_line()
        elif now - self.last_line >= self.PLAIN_EVERY_S:
            self.last_line = now
            print(f"eval: {self._summary()}", file=self.stream, flush=True)

    def _summary(self) -> str:
        return f"{self.done} answers ({self.cached} from cache, {self.failed} failed)"

    def _live_line(self) -> None:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream)
        self._console.print(f"eval: {self._summary()}", end="\r", highlight=False)

    def close(self) -> None:
        if self.done:
            print(f"eval: {self._summary()}" + (" " * 10 if self.live else ""), file=self.stream, flush=True)
