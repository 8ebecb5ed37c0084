"""An OpenAI-compatible stub model server for tests, standard library only.

Clients reach it the way they reach a real provider, through litellm's own
code path: model ``openai/<anything>``, ``api_base=stub.base_url`` and
``api_key="stub"``. It serves

- ``POST /v1/chat/completions``: a ``chat.completion`` whose text comes from a
  ``responder`` hook, else the first matching Rule, else ``default_reply``.
  ``n`` gives n identical choices; ``max_tokens`` (or ``max_completion_tokens``)
  cuts the reply with ``finish_reason: "length"``; ``stream: true`` is answered
  as server-sent events, a word per chunk, with a usage chunk when
  ``stream_options.include_usage`` is set. ``cached_tokens`` reports that many
  of the prompt's tokens (at most all) as served from the provider's prompt
  cache, in ``usage.prompt_tokens_details.cached_tokens``.
- ``POST /v1/embeddings``: deterministic pseudo-embeddings (see ``embed``) of
  ``embedding_dim`` dimensions, or the request's ``dimensions``; float lists,
  or base64 float32 when ``encoding_format`` is ``"base64"``.
- ``POST /v1/rerank`` (also ``/v1/v2/rerank``): Cohere's rerank answer,
  ``results`` of ``index`` and ``relevance_score`` (the share of the query's
  distinct words that a document holds, see ``rerank_score``), best first,
  ``top_n`` of them. litellm reaches it as ``cohere/<anything>`` with
  ``api_base=stub.base_url``: it posts Cohere's v2 body to ``{api_base}/v2/rerank``.
- ``GET /v1/models``: the ``models`` it was given.

Token counts are ``len(text) // 4 + 1`` per message and per reply. Each POST
first takes the next of the server's ``faults`` (then rule faults, for chat),
then waits ``latency_ms`` plus a seeded uniform jitter of up to ``jitter_ms``.
Paths work with or without the ``/v1`` prefix.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import random
import re
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

from promptops.testing.rules import Fault, FaultSpec, Responder, Rule, parse_faults, text_of

API_KEY = "stub"
CHAT, EMBEDDINGS, RERANK, MODELS = "chat/completions", "embeddings", "rerank", "models"
# litellm's cohere/ route posts its v2 body to {api_base}/v2/rerank; v1 clients post to /v1/rerank.
_RERANK_ROUTES = {"rerank": RERANK, "v2/rerank": RERANK}
# A reply cut off in the middle, as a proxy or a crashed worker might send it.
GARBAGE = b'{"id": "chatcmpl-garbage", "object": "chat.completion", "choices": [{"index": 0, "mess'
_WORD = re.compile(r"\w+")


def count_tokens(text: str) -> int:
    """A rough, deterministic count: about four characters a token."""
    return len(text) // 4 + 1


def embed(text: str, dim: int) -> list[float]:
    """A hashed bag of words, L2-normalised.

    Each lowercased word adds +1 or -1 to one of ``dim`` slots, both chosen by
    its BLAKE2 hash (the random sign keeps unrelated words from piling up), so
    the cosine of two vectors roughly tracks the share of words the texts have
    in common: the same text always gives the same vector, texts sharing most
    words score near 1, texts sharing none near 0. It knows nothing of meaning:
    synonyms are unrelated.
    """
    vec = [0.0] * dim
    for word in _WORD.findall(text.lower()) or [""]:
        slot, sign = _slot(word, dim)
        vec[slot] += sign
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:  # words that cancelled out: a fixed unit vector keeps cosine defined
        vec[0] = norm = 1.0
    return [v / norm for v in vec]


@lru_cache(maxsize=65536)
def _slot(word: str, dim: int) -> tuple[int, float]:
    """The slot a word adds to and its sign, from its BLAKE2 hash (remembered: a corpus repeats its words)."""
    h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
    return h % dim, 1.0 if h >> 63 else -1.0


def rerank_score(query: str, document: str) -> float:
    """The share of the query's distinct lowercased words that occur in the document, in [0, 1].

    Unlike ``embed``'s cosine, a long document is not penalised for its other
    words, so reranking can reorder what the vector search returned.
    """
    wanted = set(_WORD.findall(query.lower()))
    if not wanted:
        return 0.0
    return len(wanted & set(_WORD.findall(document.lower()))) / len(wanted)


def _document_text(document: Any) -> str:
    """A rerank document: a string, or Cohere's object form with a ``text`` field."""
    if isinstance(document, Mapping):
        return str(document.get("text", ""))
    return str(document)


def rerank(body: Mapping[str, Any], seq: int) -> dict[str, Any]:
    texts = [_document_text(d) for d in body["documents"]]
    scored = sorted(((rerank_score(body["query"], t), i) for i, t in enumerate(texts)), key=lambda s: (-s[0], s[1]))
    top_n = body.get("top_n")
    if isinstance(top_n, int) and top_n > 0:
        scored = scored[:top_n]
    with_text = body.get("return_documents") is True
    results = [{"index": i, "relevance_score": score, **({"document": {"text": texts[i]}} if with_text else {})}
               for score, i in scored]
    return {"id": f"rerank-stub-{seq}", "results": results,
            "meta": {"billed_units": {"search_units": 1}, "tokens": {"input_tokens": sum(map(count_tokens, texts))}}}


def error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = {400: ("invalid_request_error", None), 404: ("invalid_request_error", "not_found"),
                  429: ("requests", "rate_limit_exceeded")}.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _cut(reply: str, body: Mapping[str, Any]) -> tuple[str, str]:
    """The reply within the request's token limit, and the finish reason."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and count_tokens(reply) > limit:
        return reply[: limit * 4 - 1], "length"  # count_tokens of the cut is exactly `limit`
    return reply, "stop"


def _usage(body: Mapping[str, Any], completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    prompt = sum(count_tokens(text_of(m.get("content"))) for m in body.get("messages") or [])
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                             "total_tokens": prompt + completion_tokens}
    if cached_tokens:  # as OpenAI reports input served from its prompt cache
        usage["prompt_tokens_details"] = {"cached_tokens": min(cached_tokens, prompt)}
    return usage


def _choices(body: Mapping[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and n > 0 else 1


def chat_completion(body: Mapping[str, Any], reply: str, seq: int, cached_tokens: int = 0) -> dict[str, Any]:
    text, finish = _cut(reply, body)
    n = _choices(body)
    return {
        "id": f"chatcmpl-stub-{seq}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "system_fingerprint": "promptops-stub",
        "choices": [{"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": finish} for i in range(n)],
        "usage": _usage(body, n * count_tokens(text), cached_tokens),
    }


def chat_chunks(body: Mapping[str, Any], reply: str, seq: int) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` events of a streamed answer, a word per chunk."""
    text, finish = _cut(reply, body)
    n = _choices(body)
    head = {"id": f"chatcmpl-stub-{seq}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": body.get("model", ""), "system_fingerprint": "promptops-stub"}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": i, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                                    for i in range(n)]}

    yield chunk({"role": "assistant", "content": ""})
    for piece in re.findall(r"\s*\S+\s*", text) or ([text] if text else []):
        yield chunk({"content": piece})
    yield chunk({}, finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        yield {**head, "choices": [], "usage": _usage(body, n * count_tokens(text))}


def _inputs(value: Any) -> list[str]:
    """Embedding inputs as texts: a string, strings, or token id lists (read as their numbers)."""
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))]
    return [v if isinstance(v, str) else " ".join(map(str, v)) for v in value]


def embeddings(body: Mapping[str, Any], default_dim: int) -> dict[str, Any]:
    dim = body.get("dimensions") or default_dim
    texts = _inputs(body["input"])
    as_base64 = body.get("encoding_format") == "base64"  # the openai SDK asks for this unless told otherwise

    def encode(vec: list[float]) -> list[float] | str:
        return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if as_base64 else vec

    tokens = sum(count_tokens(t) for t in texts)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode(embed(t, dim))} for i, t in enumerate(texts)],
        "model": body.get("model", ""),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


@dataclass(frozen=True)
class Settings:
    """What a StubServer answers; ``StubServer.reset`` replaces any of it."""

    rules: Sequence[Rule | Mapping[str, Any]] = ()
    default_reply: str = ""
    responder: Responder | None = None
    faults: Sequence[FaultSpec] = ()
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int = 0
    embedding_dim: int = 256
    models: Sequence[str] = ("stub",)
    cached_tokens: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(r if isinstance(r, Rule) else Rule.from_dict(r) for r in self.rules))
        object.__setattr__(self, "faults", parse_faults(self.faults))
        object.__setattr__(self, "models", tuple(self.models))

    # The fields keep the types a caller may pass; __post_init__ made them these.
    @property
    def parsed_rules(self) -> tuple[Rule, ...]:
        return cast("tuple[Rule, ...]", self.rules)

    @property
    def parsed_faults(self) -> tuple[Fault | None, ...]:
        return cast("tuple[Fault | None, ...]", self.faults)


# What a settings file may hold: everything but the responder, which is code.
FILE_SETTINGS = tuple(f.name for f in fields(Settings) if f.name != "responder")


def load_settings(path: str | Path) -> dict[str, Any]:
    """StubServer keyword arguments from a YAML or JSON file.

    The file holds a list of rules, or a mapping with ``rules`` and any of
    ``default_reply``, ``faults``, ``latency_ms``, ``jitter_ms``, ``seed``,
    ``embedding_dim``, ``models``, ``cached_tokens``.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml  # only here: serving needs nothing beyond the standard library

        data = yaml.safe_load(text)
    if isinstance(data, list):
        data = {"rules": data}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a list of rules or a mapping of settings")
    unknown = sorted(set(data) - set(FILE_SETTINGS))
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(FILE_SETTINGS)}")
    try:
        return {**data, "rules": [Rule.from_dict(r) for r in data.get("rules") or []]}
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err


def load_rules(path: str | Path) -> list[Rule]:
    """Only the rules of a file that ``load_settings`` reads."""
    return load_settings(path)["rules"]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Plan:
    seq: int  # the call's number, from 1
    delay_s: float
    outcome: str | Fault | None  # a chat reply, a fault, or None: a normal embeddings answer


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler held by a "timeout" fault never holds up the interpreter's exit
    # Hundreds of clients may connect at once; the default backlog of 5 drops their SYNs (1 s retransmits).
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], stub: StubServer, verbose: bool) -> None:
        super().__init__(address, _Handler)
        self.stub, self.verbose = stub, verbose
        self.stopping = threading.Event()  # wakes handlers sleeping in latency or a timeout fault
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        # A client that gave up (its own timeout) or a stop closing idle keep-alive connections.
        if isinstance(error, ConnectionError) or (isinstance(error, OSError) and self.stopping.is_set()):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Unblock handlers waiting on idle keep-alive connections, so their threads end now."""
        with self.connections_lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's pooled connection serves many calls
    disable_nagle_algorithm = True  # else every small reply waits ~40 ms on the client's delayed ACK
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Named after the server's thread, so that a thread left running can be told apart from a test's own.
        threading.current_thread().name = f"promptops-stub:{self.server.server_address[1]} connection"
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _route(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        route = path.removeprefix("/v1").lstrip("/")
        return _RERANK_ROUTES.get(route, route)

    def do_GET(self) -> None:
        if self._route() == MODELS:
            models = self.server.stub.settings.models
            self._send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "promptops-stub"} for m in models]})
        else:
            self._send_json(404, error_body(404, f"no route GET {self.path}"))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # read first: keep-alive needs it
        route = self._route()
        if route not in (CHAT, EMBEDDINGS, RERANK):
            return self._send_json(404, error_body(404, f"no route POST {self.path}"))
        try:
            body = json.loads(raw)
        except ValueError:
            return self._send_json(400, error_body(400, "the request body is not JSON"))
        problem = _invalid(route, body)
        if problem:
            return self._send_json(400, error_body(400, problem))
        with self.server.stub._serving():
            try:
                plan = self.server.stub._plan(route, body)
            except Exception as err:  # a responder's bug: say so to the client and on stderr, keep serving
                traceback.print_exc()
                return self._send_json(500, error_body(500, f"stub responder failed: {err!r}"))
            if plan.delay_s > 0 and self.server.stopping.wait(plan.delay_s):
                self.close_connection = True
                return None
            return self._answer(route, body, plan)

    def _answer(self, route: str, body: dict[str, Any], plan: _Plan) -> None:
        outcome = plan.outcome
        if isinstance(outcome, Fault):
            return self._fail(route, body, plan.seq, outcome)
        if route == EMBEDDINGS:
            return self._send_json(200, embeddings(body, self.server.stub.settings.embedding_dim))
        if route == RERANK:
            return self._send_json(200, rerank(body, plan.seq))
        assert outcome is not None, "a chat call's plan carries its reply"
        if body.get("stream"):
            return self._stream(chat_chunks(body, outcome, plan.seq))
        return self._send_json(200, chat_completion(body, outcome, plan.seq, self.server.stub.settings.cached_tokens))

    def _fail(self, route: str, body: dict[str, Any], seq: int, fault: Fault) -> None:
        if fault.status is not None:
            headers = {}
            if fault.status in (429, 503) and fault.retry_after is not None:
                # Retry-After takes whole seconds; the openai SDK reads the exact figure from retry-after-ms first.
                headers = {"Retry-After": str(math.ceil(fault.retry_after)),
                           "retry-after-ms": str(round(fault.retry_after * 1000))}
            return self._send_json(fault.status, error_body(fault.status, f"stub fault: HTTP {fault.status}"), headers)
        if fault.kind == "garbage":
            return self._send_bytes(200, GARBAGE, "application/json")
        if fault.kind == "empty":
            return self._send_json(200, _empty_answer(route, body, seq))
        if fault.kind == "timeout":
            self.server.stopping.wait(fault.hang_s)
        self.close_connection = True  # "timeout" and "disconnect": no answer at all
        return None

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def _send_bytes(self, status: int, data: bytes, content_type: str,
                    headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, chunks: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        # No length known up front: the stream ends with the connection.
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for chunk in chunks:
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")


def _empty_answer(route: str, body: dict[str, Any], seq: int) -> dict[str, Any]:
    """A valid answer with nothing in it: no choices, no vectors, no ranked documents."""
    if route == EMBEDDINGS:
        return {**embeddings(body, 1), "data": []}
    if route == RERANK:
        return {**rerank(body, seq), "results": []}
    return {**chat_completion(body, "", seq), "choices": []}


def _invalid(route: str, body: Any) -> str | None:
    """Why a request body cannot be answered, or None."""
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    if route == CHAT and not (isinstance(body.get("messages"), list) and body["messages"]):
        return "'messages' must be a non-empty list"
    if route == EMBEDDINGS and not (isinstance(body.get("input"), (str, list)) and body["input"]):
        return "'input' must be a non-empty string or list"
    if route == RERANK and not (isinstance(body.get("query"), str) and isinstance(body.get("documents"), list)):
        return "'query' must be a string and 'documents' a list"
    return None


class StubServer:
    """An OpenAI-compatible model server on a loopback port, in a background thread.

    >>> with StubServer(rules=[Rule(match="capital of France", reply="Paris")], default_reply="I don't know") as stub:
    ...     litellm.completion(model="openai/any", api_base=stub.base_url, api_key="stub", messages=[...])

    ``requests`` lists the parsed bodies of the chat, embeddings and rerank requests
    received, in arrival order; ``calls`` counts them; ``max_in_flight`` is the
    most requests it was answering at once (a client's concurrency bound). See
    ``Settings`` and the module's docstring for what it answers.
    """

    def __init__(
        self,
        rules: Sequence[Rule | Mapping[str, Any]] = (),
        default_reply: str = "",
        *,
        responder: Responder | None = None,
        faults: Sequence[FaultSpec] = (),
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        seed: int = 0,
        embedding_dim: int = 256,
        models: Sequence[str] = ("stub",),
        cached_tokens: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.settings = Settings(rules, default_reply, responder, faults, latency_ms, jitter_ms, seed, embedding_dim,
                                 models, cached_tokens)
        self._address = (host, port)
        self._verbose = verbose
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._in_flight = 0  # requests being answered now; reset() leaves it alone
        self._clear()

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> StubServer:
        """A server with the settings of a YAML or JSON file (``load_settings``), keyword arguments winning."""
        return cls(**{**load_settings(path), **overrides})

    def _clear(self) -> None:
        self._requests: list[dict[str, Any]] = []
        self._max_in_flight = 0
        self._fault_pos = 0
        self._rule_calls = [0] * len(self.settings.rules)
        self._rng = random.Random(self.settings.seed)

    def reset(self, **settings: Any) -> None:
        """Forget the requests and restart fault sequences and jitter; keyword arguments replace settings.

        For a server shared by several tests: ``stub.reset(rules=[...], faults=["429"])``.
        """
        with self._lock:
            self.settings = replace(self.settings, **settings)
            self._clear()

    def start(self) -> StubServer:
        if self._httpd is None:
            self._httpd = _HTTPServer(self._address, self, self._verbose)
            # A short poll interval: stop() waits for the serving loop to notice.
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"promptops-stub:{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests held by latency or a timeout fault are dropped at once."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the stub server is not running: use start() or a with block")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``, the api_base to give litellm or an OpenAI client."""
        return f"http://{self._address[0]}:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    @contextmanager
    def _serving(self) -> Iterator[None]:
        """Count a chat, embeddings or rerank request as in flight while it is being answered."""
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def client_kwargs(self, model: str = "stub") -> dict[str, str]:
        """Keyword arguments that send a litellm call here:
        ``litellm.completion(**stub.client_kwargs(), messages=...)``."""
        return {"model": f"openai/{model}", "api_base": self.base_url, "api_key": API_KEY}

    def env(self) -> dict[str, str]:
        """Environment variables that send litellm's and the openai SDK's ``openai/`` calls here (for subprocesses)."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_BASE": self.base_url, "OPENAI_API_KEY": API_KEY}

    def _plan(self, route: str, body: dict[str, Any]) -> _Plan:
        with self._lock:
            settings = self.settings
            self._requests.append(body)
            seq = len(self._requests)
            faults = settings.parsed_faults
            fault = faults[self._fault_pos] if self._fault_pos < len(faults) else None
            self._fault_pos += 1
            jitter_ms = self._rng.uniform(0.0, settings.jitter_ms) if settings.jitter_ms else 0.0
        delay_s = (settings.latency_ms + jitter_ms) / 1000
        if fault is not None or route != CHAT:
            return _Plan(seq, delay_s, fault)
        # The responder is the user's code: called outside the lock, so a slow one never serialises the server.
        reply = settings.responder(body) if settings.responder else None
        if reply is not None:
            if not isinstance(reply, (str, Fault)):
                raise TypeError(f"a responder returns a str, a Fault or None, not {type(reply).__name__}")
            return _Plan(seq, delay_s, reply)
        with self._lock:
            for index, rule in enumerate(self.settings.parsed_rules):
                reply = rule.reply_for(body)
                if reply is None:
                    continue
                calls = self._rule_calls[index]
                self._rule_calls[index] += 1
                if calls < len(rule.fault_sequence) and rule.fault_sequence[calls] is not None:
                    reply = rule.fault_sequence[calls]
                if rule.latency_ms is not None:
                    delay_s = (rule.latency_ms + jitter_ms) / 1000
                return _Plan(seq, delay_s, reply)
            return _Plan(seq, delay_s, self.settings.default_reply)
