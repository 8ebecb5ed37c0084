"""A fake of the GitHub REST endpoints promptops uses, on a loopback port, standard library only.

    from promptops.testing.github import FakeGitHub

    with FakeGitHub(token="ghs_test") as gh:
        gh.add_comment("octo/repo", 7, "looks good", user="octocat")
        with GitHubClient(gh.api_url, "ghs_test") as client:
            upsert_sticky_comment(client, "octo/repo", 7, "report", generated_at=now)
        assert [r.method for r in gh.requests] == ["GET", "GET", "POST"]

It serves ``GET /user``; ``GET`` and ``POST /repos/{owner}/{repo}/issues/{n}/comments``
(``per_page``, at most 100, and ``page``, with ``Link`` headers as GitHub
sends them); ``PATCH`` and ``DELETE /repos/{owner}/{repo}/issues/comments/{id}``.
With ``enterprise=True`` every path sits under ``/api/v3``, as on GitHub
Enterprise Server, and paths without it are 404. A request without
``Authorization: Bearer TOKEN`` (or ``token TOKEN``) gets a 401.

For attacks and races: ``endless_pages=True`` links a next page from every
page, as a broken proxy might; ``on_request`` runs a callback (another client's
write, say ``edit_comment``) just before or just after a matching request is
served.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

FORBIDDEN = "Resource not accessible by integration"  # what a read-only GITHUB_TOKEN gets on a write
FAULT_KINDS = ("secondary", "primary", "forbidden", "disconnect")
_WRITES = ("POST", "PATCH", "DELETE")


@dataclass(frozen=True)
class GitHubFault:
    """One injected failure, for the next request (of ``method``, if given).

    ``kind`` is an HTTP status 400-599 with a GitHub-style error body, or
    ``"secondary"`` (403, a secondary rate limit, ``retry-after: wait_s``),
    ``"primary"`` (403, ``x-ratelimit-remaining: 0`` and a reset ``wait_s``
    from now), ``"forbidden"`` (403 "Resource not accessible by integration"),
    ``"disconnect"`` (the connection closes without an answer). With
    ``after_write``, a write is carried out first and then fails, as a 502 from
    a proxy can hide a comment that was in fact made.
    """

    kind: str
    wait_s: int = 1
    method: str | None = None
    after_write: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS and not (self.kind.isdigit() and 400 <= int(self.kind) <= 599):
            raise ValueError(f"unknown fault {self.kind!r}: use an HTTP status 400-599 "
                             f"or one of {', '.join(FAULT_KINDS)}")


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it; the token in Authorization is shown as ``***``."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


@dataclass
class _Hook:
    match: Callable[[Recorded], bool]
    action: Callable[[], None]
    after: bool
    times: int


@dataclass
class _State:
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    faults: list[GitHubFault] = field(default_factory=list)
    hooks: list[_Hook] = field(default_factory=list)
    next_id: int = 1000


class FakeGitHub:
    """GitHub's issue-comment endpoints in a background thread; see the module docstring.

    ``identity`` is who the token belongs to: a name ending in ``[bot]`` (the
    default, ``github-actions[bot]``, as for GITHUB_TOKEN) makes comments by a
    Bot and ``GET /user`` a 403, as GitHub does for installation tokens; any
    other name is a user that ``GET /user`` returns. ``read_only=True`` answers
    every write with 403 "Resource not accessible by integration", as for a
    pull request from a fork. ``endless_pages=True`` answers every page of
    comments, past the last one too, with a ``next`` link.
    """

    def __init__(self, token: str = "ghs_fake_token", *, identity: str = "github-actions[bot]",
                 read_only: bool = False, enterprise: bool = False, host: str = "127.0.0.1",
                 endless_pages: bool = False) -> None:
        self.token, self.identity, self.read_only = token, identity, read_only
        self.endless_pages = endless_pages
        self.prefix = "/api/v3" if enterprise else ""
        self._host = host
        self._lock = threading.Lock()
        self._state = _State()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> FakeGitHub:
        if self._httpd is None:
            handler = type("Handler", (_Handler,), {"fake": self})
            self._httpd = ThreadingHTTPServer((self._host, 0), handler)
            self._httpd.daemon_threads = True  # an idle keep-alive connection never holds up the exit
            threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                             name=f"promptops-fake-github:{self._httpd.server_address[1]}", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``.../api/v3`` with ``enterprise=True``): GITHUB_API_URL for clients."""
        if self._httpd is None:
            raise RuntimeError("FakeGitHub is not running: use start() or a with block")
        return f"http://{self._host}:{self._httpd.server_address[1]}{self.prefix}"

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._state.requests)

    def comments(self, repository: str, number: int) -> list[dict[str, Any]]:
        """The comments of one issue or pull request, oldest first (copies)."""
        with self._lock:
            return [dict(c) for c in self._state.comments.values()
                    if c["_repository"] == repository and c["_number"] == number]

    def add_comment(self, repository: str, number: int, body: str, *, user: str = "octocat") -> dict[str, Any]:
        """Seed a comment; ``user`` ending in ``[bot]`` makes a Bot's comment."""
        with self._lock:
            return dict(self._new_comment(repository, number, body, user))

    def edit_comment(self, comment_id: int, body: str) -> None:
        """Change a comment's body as another client's PATCH would (``updated_at`` is now)."""
        with self._lock:
            self._state.comments[comment_id].update(body=body, updated_at=_now())

    def on_request(self, match: Callable[[Recorded], bool], action: Callable[[], None], *,
                   after: bool = False, times: int = 1) -> None:
        """Run ``action`` (outside the fake's lock: it may call ``edit_comment``) just before, or with
        ``after=True`` just after, each of the next ``times`` requests that ``match`` accepts: another
        client's request landing in between, as in a race of two workflow runs."""
        with self._lock:
            self._state.hooks.append(_Hook(match, action, after, times))

    def fail_next(self, *faults: GitHubFault | str) -> None:
        """Fail the next requests, one fault each, in order (a string is a fault's kind)."""
        with self._lock:
            self._state.faults += [f if isinstance(f, GitHubFault) else GitHubFault(f) for f in faults]

    def reset(self) -> None:
        """Forget comments, requests, pending faults and hooks."""
        with self._lock:
            self._state = _State()

    # Called by the handler, under the lock.

    def _new_comment(self, repository: str, number: int, body: str, user: str) -> dict[str, Any]:
        self._state.next_id += 1
        cid, now = self._state.next_id, _now()
        comment = {
            "id": cid, "body": body, "created_at": now, "updated_at": now,
            "user": {"login": user, "type": "Bot" if user.endswith("[bot]") else "User"},
            "html_url": f"https://github.invalid/{repository}/pull/{number}#issuecomment-{cid}",
            "_repository": repository, "_number": number,
        }
        self._state.comments[cid] = comment
        return comment

    def _take_hooks(self, request: Recorded, after: bool) -> list[_Hook]:
        due = [hook for hook in self._state.hooks if hook.after == after and hook.times > 0 and hook.match(request)]
        for hook in due:
            hook.times -= 1
        return due

    def _take_fault(self, method: str) -> GitHubFault | None:
        for index, fault in enumerate(self._state.faults):
            if fault.method in (None, method):
                return self._state.faults.pop(index)
        return None


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _public(comment: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in comment.items() if not k.startswith("_")}


def _error(status: int, message: str) -> dict[str, Any]:
    return {"message": message, "documentation_url": "https://docs.github.com/rest", "status": str(status)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections
    fake: FakeGitHub
    server: ThreadingHTTPServer

    def setup(self) -> None:
        super().setup()
        # Named after the server's thread, so that a thread left running can be told apart from a test's own.
        threading.current_thread().name = f"promptops-fake-github:{self.server.server_address[1]} connection"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read .requests instead

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # read first: keep-alive needs it
        fake = self.fake
        with fake._lock:
            fault, request = self._record(method, raw)
            before = fake._take_hooks(request, after=False)
        for hook in before:
            hook.action()
        if fault is not None and not fault.after_write:
            return self._fail(fault)
        if not self._authorised():
            return self._send(401, _error(401, "Bad credentials"))
        status, body, headers = self._route(method, raw)
        with fake._lock:
            after = fake._take_hooks(request, after=True)
        for hook in after:
            hook.action()
        if fault is not None:
            return self._fail(fault)
        return self._send(status, body, headers)

    def _record(self, method: str, raw: bytes) -> tuple[GitHubFault | None, Recorded]:
        url = urlsplit(self.path)
        headers = {k: v for k, v in self.headers.items()}
        for name in headers:
            if name.lower() == "authorization":
                headers[name] = headers[name].replace(self.fake.token, "***")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        request = Recorded(method, url.path, dict(parse_qsl(url.query)), headers, body)
        self.fake._state.requests.append(request)
        return self.fake._take_fault(method), request

    def _authorised(self) -> bool:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() in ("bearer", "token") and token == self.fake.token

    def _route(self, method: str, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        fake = self.fake
        url = urlsplit(self.path)
        if not url.path.startswith(fake.prefix + "/"):
            return 404, _error(404, "Not Found"), {}
        parts = url.path[len(fake.prefix):].strip("/").split("/")
        if parts == ["user"] and method == "GET":
            if fake.identity.endswith("[bot]"):
                return 403, _error(403, FORBIDDEN), {}
            return 200, {"login": fake.identity, "type": "User"}, {}
        if method in _WRITES and fake.read_only:
            return 403, _error(403, FORBIDDEN), {}
        if (len(parts) == 6 and parts[0] == "repos" and parts[3] == "issues" and parts[5] == "comments"
                and parts[4].isdigit()):
            return self._issue_comments(method, f"{parts[1]}/{parts[2]}", int(parts[4]), raw)
        if len(parts) == 6 and parts[:1] == ["repos"] and parts[3:5] == ["issues", "comments"] and parts[5].isdigit():
            return self._one_comment(method, f"{parts[1]}/{parts[2]}", int(parts[5]), raw)
        return 404, _error(404, "Not Found"), {}

    def _issue_comments(self, method: str, repository: str, number: int, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        fake = self.fake
        if method == "POST":
            body = _comment_body(raw)
            if body is None:
                return 422, _error(422, "Invalid request: body is missing or not a string"), {}
            with fake._lock:
                return 201, _public(fake._new_comment(repository, number, body, fake.identity)), {}
        if method != "GET":
            return 404, _error(404, "Not Found"), {}
        query = dict(parse_qsl(urlsplit(self.path).query))
        try:
            per_page = min(max(int(query.get("per_page", "30")), 1), 100)
            page = max(int(query.get("page", "1")), 1)
        except ValueError:
            return 422, _error(422, "per_page and page must be numbers"), {}
        everything = [_public(c) for c in fake.comments(repository, number)]
        last = max(1, -(-len(everything) // per_page))
        if fake.endless_pages:
            last = page + 1
        return 200, everything[(page - 1) * per_page: page * per_page], self._links(page, last, per_page)

    def _links(self, page: int, last: int, per_page: int) -> dict[str, str]:
        base = f"{self.fake.api_url}{urlsplit(self.path).path[len(self.fake.prefix):]}"
        rels: dict[str, int] = {}
        if page > 1:
            rels.update(first=1, prev=page - 1)
        if page < last:
            rels.update(next=page + 1, last=last)
        links = [f'<{base}?per_page={per_page}&page={n}>; rel="{rel}"' for rel, n in rels.items()]
        return {"Link": ", ".join(links)} if links else {}

    def _one_comment(self, method: str, repository: str, cid: int, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        fake = self.fake
        with fake._lock:
            comment = fake._state.comments.get(cid)
            if comment is None or comment["_repository"] != repository:
                return 404, _error(404, "Not Found"), {}
            if method == "DELETE":
                del fake._state.comments[cid]
                return 204, None, {}
            if method == "GET":
                return 200, _public(comment), {}
            body = _comment_body(raw)
            if method != "PATCH" or body is None:
                return 422, _error(422, "Invalid request"), {}
            comment.update(body=body, updated_at=_now())
            return 200, _public(comment), {}

    def _fail(self, fault: GitHubFault) -> None:
        if fault.kind == "disconnect":
            self.close_connection = True
            return None
        if fault.kind == "secondary":
            return self._send(403, _error(403, "You have exceeded a secondary rate limit. Please wait a few "
                                               "minutes before you try again."), {"retry-after": str(fault.wait_s)})
        if fault.kind == "primary":
            return self._send(403, _error(403, "API rate limit exceeded"), {
                "x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(int(time.time()) + fault.wait_s)})
        if fault.kind == "forbidden":
            return self._send(403, _error(403, FORBIDDEN))
        status = int(fault.kind)
        headers = {"retry-after": str(fault.wait_s)} if status == 429 else {}
        return self._send(status, _error(status, f"fake fault: HTTP {status}"), headers)

    def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _comment_body(raw: bytes) -> str | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    body = data.get("body") if isinstance(data, dict) else None
    return body if isinstance(body, str) else None
