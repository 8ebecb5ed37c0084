"""GitHub Actions and the GitHub REST API: the context of a run, one sticky PR comment, outputs.

Nothing here is imported on lint's path; httpx is imported when a client is made.
Every message this module produces leaves the token out.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from promptops import __version__
from promptops.errors import ServiceError, UsageError

if TYPE_CHECKING:
    import httpx

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_SERVER_URL = "https://github.com"
COMMENT_LIMIT = 65_536  # characters GitHub accepts in a comment body
MAX_PAGES, MAX_ITEMS = 100, 10_000  # a list read no further: far more comments than a pull request has
ACTIONS_BOT = "github-actions[bot]"  # who writes with the job's GITHUB_TOKEN
CLOCK_SKEW = timedelta(minutes=10)  # between the runner's clock and GitHub's, at most
PR_EVENTS = ("pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment")


class GitHubError(ServiceError):
    """GitHub failed, after retries where retrying made sense (CLI exit 3)."""


class GitHubInputError(UsageError):
    """What the workflow gave us is unusable: a missing or broken event file (CLI exit 2)."""


class _MaybeApplied(GitHubError):
    """A write failed in a way that leaves unknown whether GitHub carried it out."""


@dataclass(frozen=True)
class PullRequest:
    repository: str  # "owner/name" of the base repository: where the comment goes
    number: int
    base_ref: str
    base_sha: str
    head_ref: str
    head_sha: str
    is_fork: bool  # the head lives in another repository: no secrets, a read-only token
    url: str | None


@dataclass(frozen=True)
class ActionsContext:
    in_actions: bool
    api_url: str
    server_url: str
    repository: str | None
    event_name: str | None
    run_id: str | None
    pull_request: PullRequest | None
    step_summary: Path | None
    output: Path | None
    token: str | None = field(repr=False)
    run_attempt: str | None = None
    comment_author: str | None = None  # the bot an app token writes as, when it is not github-actions[bot]

    @property
    def run_order(self) -> RunOrder | None:
        """Where this run stands among the repository's runs, for the sticky comment's marker."""
        return RunOrder.parse(self.run_id, self.run_attempt)

    @property
    def run_url(self) -> str | None:
        """The web page of this workflow run, for a link in the report."""
        if not (self.repository and self.run_id):
            return None
        return f"{self.server_url}/{self.repository}/actions/runs/{self.run_id}"


def actions_context(environ: Mapping[str, str] | None = None) -> ActionsContext:
    """What GitHub Actions tells a step through its environment (``os.environ`` by default).

    The event payload is read only for pull-request events; any other event,
    or a run outside Actions, has no ``pull_request``.
    """
    import os

    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        return env.get(name) or None  # Actions sets some variables empty

    event_name = get("GITHUB_EVENT_NAME")
    event_path = get("GITHUB_EVENT_PATH")
    pull_request = None
    if event_name in PR_EVENTS and event_path:
        pull_request = _pull_request(Path(event_path), get("GITHUB_REPOSITORY"))
    return ActionsContext(
        in_actions=env.get("GITHUB_ACTIONS") == "true",
        api_url=(get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/"),
        server_url=(get("GITHUB_SERVER_URL") or DEFAULT_SERVER_URL).rstrip("/"),
        repository=get("GITHUB_REPOSITORY"),
        event_name=event_name,
        run_id=get("GITHUB_RUN_ID"),
        pull_request=pull_request,
        step_summary=Path(env["GITHUB_STEP_SUMMARY"]) if get("GITHUB_STEP_SUMMARY") else None,
        output=Path(env["GITHUB_OUTPUT"]) if get("GITHUB_OUTPUT") else None,
        token=_token(get("GITHUB_TOKEN")),
        run_attempt=get("GITHUB_RUN_ATTEMPT"),
        comment_author=get("PROMPTOPS_COMMENT_AUTHOR"),
    )


def _token(value: str | None) -> str | None:
    """GITHUB_TOKEN without the white space around it; GitHubInputError when what is left is no token."""
    token = (value or "").strip()
    if token and not _usable_token(token):
        raise GitHubInputError("GITHUB_TOKEN holds a line break, a space or other characters no token has: "
                               "pass the token alone (check the secret given as github-token)")
    return token or None


def _usable_token(token: str) -> bool:
    return token.isascii() and token.isprintable() and " " not in token


def _pull_request(path: Path, repository: str | None) -> PullRequest:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise GitHubInputError(f"{path}: cannot read the event file (GITHUB_EVENT_PATH): "
                               f"{err.strerror or err}") from None
    except ValueError as err:
        raise GitHubInputError(f"{path}: the event file (GITHUB_EVENT_PATH) is not JSON: {err}") from None

    def required(*keys: str, kind: type = str) -> Any:
        value = _dig(payload, keys)
        if not isinstance(value, kind) or isinstance(value, bool) or value == "":
            raise GitHubInputError(f"{path}: the event has no {kind.__name__} at {'.'.join(keys)}")
        return value

    base_repo = _text(_dig(payload, ("pull_request", "base", "repo", "full_name"))) or repository
    if base_repo is None:
        required("pull_request", "base", "repo", "full_name")  # raises, naming what is missing
    # A deleted fork leaves head.repo null: count it as a fork, the safe side.
    head_repo = _text(_dig(payload, ("pull_request", "head", "repo", "full_name")))
    return PullRequest(
        repository=str(base_repo),
        number=required("pull_request", "number", kind=int),
        base_ref=required("pull_request", "base", "ref"),
        base_sha=required("pull_request", "base", "sha"),
        head_ref=required("pull_request", "head", "ref"),
        head_sha=required("pull_request", "head", "sha"),
        is_fork=head_repo is None or head_repo.lower() != str(base_repo).lower(),
        url=_text(_dig(payload, ("pull_request", "html_url"))),
    )


def _dig(value: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


_SECONDARY_WAIT_S = 60.0  # GitHub: without a header, wait at least a minute after a secondary rate limit


class GitHubClient:
    """A small GitHub REST client: retries, rate limits, pagination, and a token kept out of messages.

    ``api_url`` is ``https://api.github.com`` or a GitHub Enterprise Server's
    ``https://HOST/api/v3``: paths are appended to it. ``request`` retries
    5xx answers, connection errors, timeouts and rate limits ``retries`` times,
    with exponential backoff and jitter, waiting what GitHub asks (Retry-After,
    x-ratelimit-reset) unless that is over ``max_wait_s``: then it gives up at
    once rather than hold a CI job for an hour. A POST is retried only when
    GitHub surely did not carry it out (connection refused, rate limited).
    """

    def __init__(self, api_url: str, token: str, *, timeout_s: float = 30, retries: int = 4,
                 sleep: Callable[[float], None] = time.sleep, max_wait_s: float = 60.0) -> None:
        import httpx

        token = token.strip()
        if not token or not _usable_token(token):
            raise GitHubInputError("the GitHub token is empty or has characters no token has")
        self.api_url = api_url.rstrip("/")
        self.retries, self.max_wait_s = retries, max_wait_s
        self._token, self._sleep = token, sleep
        self._origin = urlsplit(self.api_url)[:2]
        self._http = httpx.Client(
            headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": "2022-11-28", "User-Agent": f"promptops/{__version__}"},
            timeout=timeout_s,
            follow_redirects=True,  # a renamed repository answers 301; httpx drops the token on another host
        )

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None) -> httpx.Response:
        """The answer to ``method path`` (any status but a retried one); GitHubError when retries run out."""
        import httpx

        url = self._url(path)
        where = f"{method} {urlsplit(url).path}"
        failure = ""
        for attempt in range(self.retries + 1):
            wait: float | None
            try:
                response = self._http.request(method, url, params=params, json=json)
            except httpx.TransportError as err:
                failure = f"{type(err).__name__}: {err}"
                # A POST is repeated only when it surely never reached GitHub.
                unsent = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
                if method == "POST" and not isinstance(err, unsent):
                    raise _MaybeApplied(self._scrub(f"{where}: {failure}")) from None
                wait = self.backoff(attempt)
            else:
                wait = self._wait_for(response, attempt)
                if wait is None:
                    return response
                failure = describe(response)
                if method == "POST" and response.status_code >= 500:
                    raise _MaybeApplied(self._scrub(f"{where}: {failure}"))
            if attempt == self.retries:
                break
            if wait > self.max_wait_s:
                raise GitHubError(self._scrub(f"{where}: {failure}; GitHub asks to wait {wait:,.0f} s, "
                                              f"longer than promptops waits ({self.max_wait_s:,.0f} s)"))
            self._sleep(wait)
        raise GitHubError(self._scrub(f"{where} failed {self.retries + 1} times; the last time: {failure}"))

    def paginate(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """The items of a list endpoint, page after page (100 a page), following ``Link: rel="next"``.

        At most ``MAX_PAGES`` pages and ``MAX_ITEMS`` items: past that GitHubError, as a proxy
        that always links a next page would otherwise hold the job until it times out.
        """
        url: str | None = path
        query: Mapping[str, Any] | None = {"per_page": 100, **(params or {})}
        seen: set[str] = set()
        items = 0
        while url and url not in seen:  # a link back to a page already read would loop forever
            where = f"GET {urlsplit(self._url(url)).path}"
            if len(seen) == MAX_PAGES:
                raise GitHubError(f"{where}: still a next page after {MAX_PAGES} pages; promptops reads no more")
            seen.add(url)
            response = self.request("GET", url, params=query)
            page = expect(response, 200)
            if not isinstance(page, list):
                raise GitHubError(f"{where}: expected a list, GitHub sent {type(page).__name__}")
            items += len(page)
            if items > MAX_ITEMS:
                raise GitHubError(f"{where}: more than {MAX_ITEMS:,} items; promptops reads no more")
            yield from page
            url, query = response.links.get("next", {}).get("url"), None  # the next link carries the query

    def backoff(self, attempt: int) -> float:
        """Seconds before retry ``attempt + 1``: 1, 2, 4, 8 ... with jitter, at most ``max_wait_s``."""
        delay = min(2.0 ** attempt, self.max_wait_s)
        return delay / 2 + random.uniform(0, delay / 2)  # jitter: parallel jobs don't retry in lockstep

    def pause(self, attempt: int) -> None:
        self._sleep(self.backoff(attempt))

    def wait(self, seconds: float) -> None:
        self._sleep(seconds)

    def _wait_for(self, response: httpx.Response, attempt: int) -> float | None:
        """How long to wait before retrying ``response``, or None when it is final."""
        status, headers = response.status_code, response.headers
        if status >= 500:
            return self.backoff(attempt)
        if status not in (403, 429):
            return None
        retry_after = headers.get("retry-after", "")
        if retry_after.strip().isdigit():
            return float(retry_after)
        reset = headers.get("x-ratelimit-reset", "")
        if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
            return max(0.0, int(reset) - time.time()) + 1
        if status == 429 or "rate limit" in _message(response).lower():
            return max(_SECONDARY_WAIT_S, self.backoff(attempt))
        return None  # a plain 403: not allowed, and retrying will not change that

    def _url(self, path: str) -> str:
        if not path.startswith(("http://", "https://")):
            return f"{self.api_url}/{path.lstrip('/')}"
        if urlsplit(path)[:2] != self._origin:
            # Pagination links come from the server; the token goes to the API's own host only.
            raise GitHubError(f"refusing to follow a link away from {self.api_url}: {urlsplit(path).netloc}")
        return path

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***")


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    return str(data.get("message") or "") if isinstance(data, dict) else ""


def describe(response: httpx.Response) -> str:
    """``HTTP 403 (Resource not accessible by integration)``: a status and GitHub's own words."""
    message = " ".join(_message(response).split())[:300]
    return f"HTTP {response.status_code}" + (f" ({message})" if message else "")


def expect(response: httpx.Response, *ok: int) -> Any:
    """The JSON of ``response`` if its status is one of ``ok``; else GitHubError."""
    where = f"{response.request.method} {response.request.url.path}"
    if response.status_code not in ok:
        hint = {401: ": the token was rejected",
                404: ": check the repository, the number, and that the token can read them"}
        raise GitHubError(f"{where}: {describe(response)}{hint.get(response.status_code, '')}")
    try:
        return response.json()
    except ValueError:
        raise GitHubError(f"{where}: GitHub's answer is not JSON") from None


@dataclass(frozen=True)
class CommentResult:
    action: str  # "created" | "updated" | "unchanged" | "skipped-newer" | "skipped-forbidden"
    comment_id: int | None
    url: str | None
    reason: str = ""


@dataclass(frozen=True, order=True)
class RunOrder:
    """A workflow run's place among the repository's runs: run ids grow as runs are created, and a
    re-run keeps its id with a higher attempt. It orders reports by the push they check, which the
    time a run happened to start (queues, re-runs of old runs) does not."""

    run_id: int
    attempt: int = 1

    @classmethod
    def parse(cls, run_id: str | None, attempt: str | None) -> RunOrder | None:
        if not (run_id and run_id.isascii() and run_id.isdigit() and len(run_id) <= 20):
            return None
        tries = attempt if attempt and attempt.isascii() and attempt.isdigit() and len(attempt) <= 6 else "1"
        return cls(int(run_id), int(tries))

    def __str__(self) -> str:
        return f"{self.run_id}.{self.attempt}"


_MARKER = re.compile(r"<!-- promptops-report key=(?P<key>[A-Za-z0-9._-]+) generated=(?P<generated>[0-9TZ:.+-]+)"
                     r"(?: run=(?P<run>[0-9]{1,20})\.(?P<attempt>[0-9]{1,6}))? -->")
_KEY = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LONGEST_RUN = RunOrder(10 ** 20 - 1, 10 ** 6 - 1)


def marker(key: str, generated_at: datetime, run: RunOrder | None = None) -> str:
    """The hidden first line that makes a comment the sticky one for ``key``: when its report was
    made and, in a workflow run, by which run."""
    where = f" run={run}" if run is not None else ""
    return f"<!-- promptops-report key={key} generated={_iso(generated_at)}{where} -->"


def body_limit(key: str = "promptops") -> int:
    """How many characters the body given to ``upsert_sticky_comment`` may have (GitHub's limit less the marker)."""
    longest = marker(key, datetime(2000, 1, 1, tzinfo=timezone.utc), _LONGEST_RUN)
    return COMMENT_LIMIT - len(longest) - 2  # its newline, the last one


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("generated_at must be timezone-aware")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_time(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


def _normal(text: str) -> str:
    return text.replace("\r\n", "\n").rstrip()


@dataclass(frozen=True)
class _Sticky:
    """One of our comments: its id, which report it holds (None: unknown or not believable), its
    text below the marker."""

    id: int
    generated: datetime | None
    run: RunOrder | None
    content: str
    url: str | None


@dataclass(frozen=True)
class _Ours:
    """What identifies our comments and orders this run's report among them."""

    key: str
    author: str
    generated: datetime
    run: RunOrder | None

    def newer(self, sticky: _Sticky) -> bool:
        """Whether ``sticky`` holds a report of a later run (or, outside Actions, made later) than ours."""
        if sticky.run is not None and self.run is not None:
            return sticky.run > self.run
        return sticky.generated is not None and sticky.generated > self.generated

    def rank(self, sticky: _Sticky) -> tuple[RunOrder, datetime, int]:
        never = datetime.min.replace(tzinfo=timezone.utc)
        return sticky.run or RunOrder(0, 0), sticky.generated or never, sticky.id


_SETTLE_S = 2.0  # after a write, how long a racing run's write may still be on its way
_REWRITES = 3  # times a report undone by an older run's late write is written again


def upsert_sticky_comment(client: GitHubClient, repository: str, number: int, body: str, *,
                          key: str = "promptops", generated_at: datetime, run: RunOrder | None = None,
                          bot: str = ACTIONS_BOT, settle_s: float = _SETTLE_S) -> CommentResult:
    """Create, or update in place, the one comment of ``key`` on pull request (or issue) ``number``.

    The comment's first line is a hidden marker with ``key``, ``generated_at``
    and, in a workflow run, ``run``. All comments are read (every page, up to a
    cap). Ours is one with our key's marker whose author is the token's user,
    or, when GitHub will not say who that is (GITHUB_TOKEN and app tokens get a
    403 on ``GET /user``), ``bot`` (``github-actions[bot]``, who writes with
    GITHUB_TOKEN; an app's token writes as ``<app>[bot]``): neither a person
    who pastes the marker nor another bot takes the report over. A marker dated after
    GitHub last wrote its comment is forged: its order is not believed. Then:

    - none: POST it ("created");
    - ours holds the report of a later run (``run``; without runs, a later
      ``generated_at``): leave it ("skipped-newer"), so a slow run of an
      older push, or a re-run of an old run, never overwrites a newer report;
    - same text below the marker: leave it ("unchanged");
    - else read it again, decide again, and PATCH it ("updated"); ``settle_s``
      later read it once more, and write again if a racing older run's PATCH
      landed after ours.

    Older duplicates of ours (two runs that raced to create it) are deleted.
    A 403 on writing (a read-only token, as on pull requests from forks) is
    "skipped-forbidden" with GitHub's reason, not an error.
    """
    if not _KEY.fullmatch(key):
        raise ValueError(f"comment key {key!r}: use 1-64 letters, digits, '.', '_' or '-'")
    content = _normal(body)
    full = f"{marker(key, generated_at, run)}\n{content}\n"
    if len(full) > COMMENT_LIMIT:
        raise ValueError(f"the comment has {len(full):,} characters; GitHub takes {COMMENT_LIMIT:,} "
                         f"(body_limit() is {body_limit(key):,})")
    comments = f"/repos/{repository}/issues/{number}/comments"
    ours = _Ours(key, _identity(client) or bot, generated_at, run)
    found = _find(client, comments, ours)
    if not found:
        return _create(client, comments, full, ours)
    *stale, newest = found
    result = _update(client, repository, comments, newest, full, content, ours, settle_s)
    if stale and result.action != "skipped-forbidden":
        result = _delete_duplicates(client, repository, stale, result)
    return result


def _identity(client: GitHubClient) -> str | None:
    """The token's login, or None when GitHub won't tell (GITHUB_TOKEN and app tokens get a 403)."""
    response = client.request("GET", "/user")
    if response.status_code not in (200, 401):
        return None
    data = expect(response, 200)  # raises on a 401: the token was rejected
    return _text(data.get("login")) if isinstance(data, dict) else None


def _find(client: GitHubClient, comments: str, ours: _Ours) -> list[_Sticky]:
    """Our comments for ``ours.key``, oldest report first."""
    found = [sticky for item in client.paginate(comments) if (sticky := _sticky(item, ours)) is not None]
    return sorted(found, key=ours.rank)


def _sticky(item: Any, ours: _Ours) -> _Sticky | None:
    """``item`` as one of our comments, or None when it is not ours."""
    if not (isinstance(item, dict) and isinstance(item.get("id"), int) and isinstance(item.get("body"), str)):
        return None
    user = item.get("user")
    login = user.get("login") if isinstance(user, dict) else None
    if not (isinstance(login, str) and login.casefold() == ours.author.casefold()):
        return None
    first, _, rest = item["body"].partition("\n")
    match = _MARKER.fullmatch(first.strip())
    if match is None or match["key"] != ours.key:
        return None
    generated = _parse_time(match["generated"])
    run = RunOrder(int(match["run"]), int(match["attempt"])) if match["run"] else None
    written = _parse_time(item.get("updated_at")) or _parse_time(item.get("created_at"))
    if generated is None or written is None or generated > written + CLOCK_SKEW:
        generated, run = None, None  # dated after GitHub wrote it: forged, so its order is not believed
    return _Sticky(item["id"], generated, run, _normal(rest), _text(item.get("html_url")))


def _forbidden(response: httpx.Response, comment_id: int | None) -> CommentResult:
    return CommentResult("skipped-forbidden", comment_id, None,
                         f"GitHub refused to write the comment, {describe(response)}: the token is read-only "
                         "here, as it is for pull requests from forks")


def _create(client: GitHubClient, comments: str, full: str, ours: _Ours) -> CommentResult:
    for attempt in range(client.retries + 1):
        try:
            response = client.request("POST", comments, json={"body": full})
        except _MaybeApplied as err:
            # GitHub may have made the comment before failing: look before posting again, or there would be two.
            made = [s for s in _find(client, comments, ours) if s.generated == ours.generated]
            if made:
                return CommentResult("created", made[-1].id, made[-1].url)
            if attempt == client.retries:
                raise GitHubError(f"{err} (posted {attempt + 1} times)") from None
            client.pause(attempt)
            continue
        if response.status_code == 403:
            return _forbidden(response, None)
        data = expect(response, 201)
        data = data if isinstance(data, dict) else {}
        return CommentResult("created", data.get("id") if isinstance(data.get("id"), int) else None,
                             _text(data.get("html_url")))
    raise AssertionError("unreachable: the loop returns or raises")


def _skipped(sticky: _Sticky, ours: _Ours) -> CommentResult:
    if sticky.run is not None and ours.run is not None:
        held, this = f"the report of run {sticky.run}", f"run {ours.run}"
    else:
        held, this = f"a report made at {_iso(sticky.generated or ours.generated)}", _iso(ours.generated)
    return CommentResult("skipped-newer", sticky.id, sticky.url, f"the comment holds {held}, after this one ({this})")


def _update(client: GitHubClient, repository: str, comments: str, sticky: _Sticky, full: str, content: str,
            ours: _Ours, settle_s: float) -> CommentResult:
    unchanged = CommentResult("unchanged", sticky.id, sticky.url, "the report has not changed")
    if ours.newer(sticky):
        return _skipped(sticky, ours)
    if sticky.content == content:
        return unchanged
    current = _reread(client, repository, sticky.id, ours)  # the list may be seconds old: decide on what is there now
    if current is None:
        return _create(client, comments, full, ours)  # deleted meanwhile, or no longer ours
    if ours.newer(current):
        return _skipped(current, ours)
    if current.content == content:
        return unchanged
    return _write(client, repository, current, full, content, ours, settle_s)


def _write(client: GitHubClient, repository: str, sticky: _Sticky, full: str, content: str, ours: _Ours,
           settle_s: float) -> CommentResult:
    """PATCH the comment; write again while an older run's PATCH, sent before ours, lands after it."""
    for _ in range(_REWRITES + 1):
        response = client.request("PATCH", f"/repos/{repository}/issues/comments/{sticky.id}", json={"body": full})
        if response.status_code == 403:
            return _forbidden(response, sticky.id)
        data = expect(response, 200)
        result = CommentResult("updated", sticky.id,
                               (_text(data.get("html_url")) if isinstance(data, dict) else None) or sticky.url)
        client.wait(settle_s)
        after = _reread(client, repository, sticky.id, ours)
        if after is None or ours.newer(after) or after.content == content:
            return result  # ours stands, or a newer run's report replaced it, as it should
    return CommentResult("updated", result.comment_id, result.url,
                         f"racing runs kept overwriting the comment; it was written {_REWRITES + 1} times")


def _reread(client: GitHubClient, repository: str, comment_id: int, ours: _Ours) -> _Sticky | None:
    """The comment as GitHub holds it now, or None when it is gone (or no longer ours)."""
    response = client.request("GET", f"/repos/{repository}/issues/comments/{comment_id}")
    if response.status_code == 404:
        return None
    return _sticky(expect(response, 200), ours)

def _delete_duplicates(client: GitHubClient, repository: str, stale: list[_Sticky],
                       result: CommentResult) -> CommentResult:
    failed = []
    for sticky in stale:
        try:
            response = client.request("DELETE", f"/repos/{repository}/issues/comments/{sticky.id}")
        except GitHubError as err:
            failed.append(f"{sticky.id} ({err})")
            continue
        if response.status_code not in (204, 404):  # 404: a concurrent run deleted it first
            failed.append(f"{sticky.id} ({describe(response)})")
    if not failed:
        return result
    note = f"could not delete duplicate comment(s) {', '.join(failed)}"
    return CommentResult(result.action, result.comment_id, result.url, "; ".join(filter(None, [result.reason, note])))


_OUTPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def write_outputs(path: Path, values: Mapping[str, str]) -> None:
    """Append step outputs to ``$GITHUB_OUTPUT``, each as ``name<<DELIMITER`` lines.

    The delimiter is random and checked not to occur in the value, so a value
    (multi-line, or written by a model) cannot end early or set other outputs.
    """
    lines = []
    for name, value in values.items():
        if not _OUTPUT_NAME.fullmatch(name):
            raise ValueError(f"output name {name!r}: use letters, digits, '_' or '-'")
        value = str(value)
        delimiter = f"promptops_{uuid.uuid4().hex}"
        while delimiter in value:
            delimiter = f"promptops_{uuid.uuid4().hex}"
        lines += [f"{name}<<{delimiter}", value, delimiter]
    _append(path, "\n".join(lines) + "\n" if lines else "")


def append_step_summary(path: Path, markdown: str) -> None:
    """Append Markdown to ``$GITHUB_STEP_SUMMARY`` (the job's summary page), ending with a newline."""
    _append(path, markdown if markdown.endswith("\n") else markdown + "\n")


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8", newline="\n") as out:
        out.write(text)
