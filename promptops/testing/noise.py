"""A noisy model for the stub server: right answers with a seeded chance of a wrong one, drawn per call.

Real models at a temperature above zero answer the same request differently from call to call.
``NoisyResponder`` makes the stub do that, reproducibly: each call's draw depends only on the seed,
the request's messages and how many times that exact request has been asked before, never on the
order in which concurrent calls arrive. So a run repeated with a fresh cache and the same seed sees
the same answers, and a new seed is a new trial.

    noisy = NoisyResponder(lambda request: "Paris", wrong="Nowhere", error_rate=0.2, seed=7)
    with StubServer(responder=noisy) as stub:
        ...

``error_rate`` may be a function of the request, to make some cases (or one prompt version) worse.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any

ErrorRate = float | Callable[[dict[str, Any]], float]


class NoisyResponder:
    """A ``StubServer`` responder: ``answer(request)``, or ``wrong`` with probability ``error_rate``."""

    def __init__(self, answer: Callable[[dict[str, Any]], str], *, wrong: str, error_rate: ErrorRate,
                 seed: int = 0) -> None:
        self.answer, self.wrong, self.error_rate, self.seed = answer, wrong, error_rate, seed
        self._asked: dict[str, int] = {}
        self._lock = threading.Lock()  # the stub answers each request on a thread of its own
        self.wrong_answers = 0

    def __call__(self, request: dict[str, Any]) -> str:
        text = json.dumps(request.get("messages") or [], sort_keys=True)
        with self._lock:
            occurrence = self._asked.get(text, 0)
            self._asked[text] = occurrence + 1
        rate = self.error_rate(request) if callable(self.error_rate) else self.error_rate
        if self._draw(text, occurrence) < rate:
            with self._lock:
                self.wrong_answers += 1
            return self.wrong
        return self.answer(request)

    def _draw(self, text: str, occurrence: int) -> float:
        """A uniform number in [0, 1) fixed by the seed, the request and its occurrence."""
        digest = hashlib.blake2b(f"{self.seed}\0{occurrence}\0{text}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64
