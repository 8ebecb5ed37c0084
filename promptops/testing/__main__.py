"""``python -m promptops.testing``: serve the stub until Ctrl-C, for trying an app or a suite by hand.

The first line on stdout is the base URL (a script can read it); the rest goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Sequence
from typing import Any

from promptops.testing.server import API_KEY, StubServer, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m promptops.testing",
                                     description="An OpenAI-compatible stub model server "
                                                 "(chat completions, embeddings).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: 0, any free port)")
    parser.add_argument("--rules", metavar="FILE", help="YAML or JSON: a list of rules, or a mapping of settings")
    # Defaults of None: only options given override the rules file.
    parser.add_argument("--default-reply", help="reply when no rule matches")
    parser.add_argument("--latency-ms", type=float, help="delay before every answer")
    parser.add_argument("--jitter-ms", type=float, help="plus a seeded uniform random delay up to this")
    parser.add_argument("--seed", type=int, help="seed for the jitter")
    parser.add_argument("--faults", type=lambda s: s.split(","), metavar="F1,F2,...",
                        help="faults for the first calls, in order: 429, 500 (any 4xx/5xx), timeout, garbage, "
                             "empty, disconnect, ok")
    parser.add_argument("--embedding-dim", type=int, help="embedding size when a request gives no dimensions")
    parser.add_argument("--quiet", action="store_true", help="do not log requests on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings: dict[str, Any] = load_settings(args.rules) if args.rules else {}
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name in ("default_reply", "latency_ms", "jitter_ms", "seed", "faults", "embedding_dim"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    try:
        stub = StubServer(**settings, host=args.host, port=args.port, verbose=not args.quiet)
    except (TypeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with stub:
        print(stub.base_url, flush=True)
        print(f"serving: model openai/<any name>, api_base {stub.base_url}, api_key {API_KEY}; Ctrl-C stops",
              file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
