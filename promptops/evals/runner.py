"""Model calls for eval suites: through litellm's async API, bounded, retried, capped, cached.

Every call is first looked up in the result cache by its content address; a
re-run with nothing changed makes no model call and never imports litellm.
The rest run with bounded concurrency (overall and per provider), a timeout
per attempt, retries with exponential backoff and jitter on 429, 5xx,
timeouts, dropped connections and malformed answers (a Retry-After header
wins over the computed delay), and a spend cap that refuses a call before it
could push the run past the cap. Each answer is written to the cache as it
arrives.

A ``CallEngine`` holds those bounds and the budget for a whole eval run; the
calls themselves run in its event loop, or in worker processes
(``workers.WorkerPool``) when a run is big enough to pay for starting them.
A request identical to one already in flight (base and head often render the
same messages) is not sent again: it takes the first one's answer.

Latency is the time from sending a call to the end of its answer. The first
call of each process to each provider route goes alone and is not timed: it
pays for litellm's lazy imports and the first connection (about half a second
here), which would otherwise land on the first wave of calls and look like a
slower prompt.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from promptops.errors import UsageError
from promptops.estimate.tokens import TokenCounter
from promptops.evals.credentials import missing_credentials
from promptops.model.evals import Call, CallOutcome, Failure
from promptops.modelparams import OWN as _OWN_PARAMS, RefusedParams, refusal, refused_extra
from promptops.models import ModelCatalog
from promptops.pricing import reported_cost
from promptops.report.safety import scrubbed
from promptops.resultcache import CachedResult, PendingWrites, ResultCache

T = TypeVar("T")


class MissingCredentials(UsageError):
    """A provider's API key is not in the environment; the message names the variable."""


@dataclass(frozen=True)
class RunSettings:
    concurrency: int = 8
    per_provider: dict[str, int] = field(default_factory=dict)  # e.g. {"anthropic": 4}
    timeout_s: float = 60.0
    retries: int = 4
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    max_cost_usd: float | None = None
    api_base: str | None = None  # an OpenAI-compatible server (a local model, the stub)
    api_key: str | None = None
    seed: int | None = None  # for the backoff jitter, so tests are repeatable
    budget: SpendBudget | None = field(default=None, compare=False)  # shared across calls; default: one per batch
    # The run's engine, shared by every caller (answers, judges); default: one per run_calls.
    engine: CallEngine | None = field(default=None, compare=False)


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SpendBudget:
    """Money spent and money reserved for calls in flight, against the cap; one per eval run,
    shared by every suite, both refs and the judges."""

    def __init__(self, cap: float | None) -> None:
        self.cap = cap
        self.spent = 0.0
        self.reserved = 0.0

    def reserve(self, amount: float) -> bool:
        if self.cap is not None and self.spent + self.reserved + amount > self.cap:
            return False
        self.reserved += amount
        return True

    def settle(self, reserved: float, actual: float | None) -> None:
        self.reserved -= reserved
        self.spent += actual if actual is not None else reserved


async def run_calls(
    calls: list[Call],
    cache: ResultCache,
    settings: RunSettings,
    on_outcome: Callable[[CallOutcome], None] = lambda outcome: None,
    catalog: ModelCatalog | None = None,
) -> list[CallOutcome]:
    """Outcomes in the order of ``calls``: cached ones at once, the others as the model answers.

    Through ``settings.engine`` when the run has one (its bounds, budget and
    workers are shared by every caller), else through an engine of its own in
    this process.
    """
    if settings.engine is not None:
        return await settings.engine.run_calls(calls, on_outcome)
    async with CallEngine(cache, settings, catalog) as engine:
        return await engine.run_calls(calls, on_outcome)


def cached_outcome(call: Call, hit: CachedResult) -> CallOutcome:
    return CallOutcome(call, hit.output, hit.input_tokens, hit.output_tokens, hit.latency_ms, hit.cost_usd,
                       cached=True)


def to_cached(outcome: CallOutcome) -> CachedResult:
    call = outcome.call
    return CachedResult(call.key, call.prompt_id, call.prompt_version, call.model, call.case_id, call.repeat,
                        outcome.output, outcome.input_tokens, outcome.output_tokens, outcome.latency_ms,
                        outcome.cost_usd)


def import_litellm() -> Any:
    """litellm, imported without its network fetch of the price map and without banners on stdout."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    # Else the import loads a .env file from the folders above litellm's own (a virtualenv inside the checkout
    # finds the pull request's .env): endpoints and keys come from the workflow's environment, not the head's files.
    os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
    if "litellm" not in sys.modules:
        # The import makes a great many objects: collecting while it runs costs a tenth of its time, and
        # freezing them afterwards spares every later collection (one per few calls) a pass over them.
        gc.disable()
        try:
            import litellm
        finally:
            gc.enable()
        gc.freeze()
    import litellm

    litellm.suppress_debug_info = True
    return litellm


class Pool(Protocol):
    """Worker processes that execute calls (``workers.WorkerPool``)."""

    async def execute(self, call: Call) -> CallOutcome: ...

    async def missing_credentials(self, models: set[str]) -> str | None: ...

    async def aclose(self) -> None: ...


class CallEngine:
    """All model calls of one eval run: the global concurrency bound, per-provider limits, the spend
    cap, and where calls execute: in this event loop, or in worker processes (a ``Pool``).

    Bounds and budget live here, in the process that plans the run, so they hold whatever the
    number of workers: a call holds one of ``concurrency`` slots from before it starts until its
    last retry ends, and reserves its worst-case cost before it starts.
    """

    def __init__(self, cache: ResultCache, settings: RunSettings, catalog: ModelCatalog | None = None,
                 pool: Pool | None = None) -> None:
        self.cache = cache
        self.settings = settings
        self.catalog = catalog or ModelCatalog()
        self.spend = settings.budget or SpendBudget(settings.max_cost_usd)
        self.slots = asyncio.Semaphore(settings.concurrency)
        self.providers = {name: asyncio.Semaphore(n) for name, n in settings.per_provider.items()}
        self.counter = TokenCounter()
        self.pool = pool
        self._local: LocalCaller | None = None
        self._checked: set[str] = set()
        self._shared: dict[str, _SharedAnswer] = {}  # requests in flight, or answered and still awaited
        self.shared_answers = 0  # answers taken from an identical request instead of a call of their own

    def expect_repeats(self, keys: Iterable[str]) -> None:
        """Say that these requests will be asked for more than once (base and head render the same
        messages): the first answer is kept until every asker has it, however late they come."""
        counts: dict[str, int] = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        for key, count in counts.items():
            if count > 1:
                self._shared.setdefault(key, _SharedAnswer()).expected += count

    async def __aenter__(self) -> CallEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the workers (they store what they have), or store what this process has not yet."""
        if self.pool is not None:
            await self.pool.aclose()
        if self._local is not None:
            self._local.writes.flush()

    async def check_credentials(self, models: set[str]) -> None:
        """Raise MissingCredentials before any call when a provider's key is missing (fork PRs get no secrets)."""
        new = models - self._checked
        if not new or self.settings.api_base:
            return  # an OpenAI-compatible server of your own takes whatever key it takes
        problem = missing_credentials(new, self.catalog)  # the providers we know, before litellm is imported
        if problem:
            raise MissingCredentials(problem)
        pool = self.pool
        problem = await pool.missing_credentials(new) if pool is not None else self._caller().missing_credentials(new)
        if problem:
            raise MissingCredentials(problem)
        self._checked |= new

    async def run_calls(self, calls: list[Call], on_outcome: Callable[[CallOutcome], None]) -> list[CallOutcome]:
        """Outcomes in the order of ``calls``: cached ones at once, the others as the model answers."""
        hits = self.cache.get_many([call.key for call in calls])
        outcomes: dict[int, CallOutcome] = {}
        pending = []
        for index, call in enumerate(calls):
            hit = hits.get(call.key)
            if hit is None:
                pending.append(index)
                continue
            outcomes[index] = cached_outcome(call, hit)
            on_outcome(outcomes[index])
        await self.check_credentials({calls[index].model for index in pending})

        def arrived(index: int, outcome: CallOutcome) -> None:
            outcomes[index] = outcome
            on_outcome(outcome)

        await self.stream(((index, calls[index]) for index in pending), arrived)
        return [outcomes[index] for index in range(len(calls))]

    async def stream(self, calls: Iterable[tuple[T, Call]], arrived: Callable[[T, CallOutcome], None]) -> None:
        """Run ``calls`` (each with a tag handed back to ``arrived``) as slots free up.

        A task is made only for a call that holds a slot, or that waits for an identical request's
        answer (it holds none), so however many calls there are, at most ``concurrency`` calls are
        in flight; ``arrived`` sees each outcome as it comes. The first error (an answer the cache
        could not store) stops the stream: no call is handed out after it, the calls in flight are
        cancelled, and it is raised.
        """
        running: set[asyncio.Task[None]] = set()
        failures: list[Exception] = []

        async def one(tag: T, call: Call, shared: _SharedAnswer) -> None:
            try:
                try:
                    outcome = await self._call(call)
                finally:
                    self.slots.release()
                shared.answer(outcome)
                self._taken(call.key, shared)
                arrived(tag, outcome)
            except Exception as exc:
                shared.fail()
                failures.append(exc)
            except BaseException:
                shared.fail()
                raise

        async def follow(tag: T, call: Call, shared: _SharedAnswer) -> None:
            try:
                outcome = await shared.wait()
                self._taken(call.key, shared)
                self.shared_answers += 1
                arrived(tag, replace(outcome, call=call, shared=True))
            except Exception as exc:
                failures.append(exc)

        def start(work: Any) -> None:
            task = asyncio.create_task(work)
            running.add(task)
            task.add_done_callback(running.discard)

        try:
            for tag, call in calls:
                if failures:
                    break
                shared = self._shared.get(call.key)
                if shared is not None and shared.started:
                    start(follow(tag, call, shared))
                    continue
                await self.slots.acquire()
                shared = self._shared.get(call.key)  # another caller may have started it while we waited
                if failures:
                    self.slots.release()
                    break
                if shared is not None and shared.started:
                    self.slots.release()
                    start(follow(tag, call, shared))
                    continue
                shared = self._shared.setdefault(call.key, _SharedAnswer())
                shared.started = True
                start(one(tag, call, shared))
            while running and not failures:
                await asyncio.wait(set(running), return_when=asyncio.FIRST_COMPLETED)
            if failures:
                raise failures[0]
        finally:
            for task in running:
                task.cancel()

    def _taken(self, key: str, shared: _SharedAnswer) -> None:
        """One asker has its answer: forget the request once every expected asker has had it."""
        shared.expected -= 1
        if shared.expected <= 0 and self._shared.get(key) is shared:
            del self._shared[key]

    async def _call(self, call: Call) -> CallOutcome:
        provider = call.model.split("/", 1)[0] if "/" in call.model else ""
        gate = self.providers.get(provider)
        if gate is None:
            return await self._with_spend_cap(call)
        async with gate:
            return await self._with_spend_cap(call)

    def _worst_case(self, call: Call) -> float:
        """What the call can cost at most: its input, and max_tokens of output (0 when the price is unknown)."""
        if self.spend.cap is None:
            return 0.0  # nothing to guard: spare the token count
        info = self.catalog.get(call.model)
        if info is None or not info.price.complete:
            return 0.0
        input_tokens = self.counter.count_messages(call.model, call.messages)
        output_tokens = call.params.get("max_tokens") or info.max_output_tokens or 4096
        return info.price.call_cost(input_tokens, output_tokens) or 0.0

    async def _with_spend_cap(self, call: Call) -> CallOutcome:
        worst = self._worst_case(call)
        if not self.spend.reserve(worst):
            spent = self.spend.spent
            return CallOutcome(call, None, error=f"not run: the spend cap ${self.spend.cap:g} would be "
                                                 f"passed (${spent:.4f} spent)", failure=Failure.SPEND_CAP)
        actual: float | None = worst  # a call cut short (Ctrl-C) may still be billed: count its worst case
        try:
            outcome = await (self.pool.execute(call) if self.pool is not None else self._caller().call(call))
            actual = outcome.cost_usd if outcome.error is None else 0.0
        finally:
            self.spend.settle(worst, actual)
        return outcome

    def _caller(self) -> LocalCaller:
        if self._local is None:
            self._local = LocalCaller(self.settings, self.catalog, PendingWrites(self.cache))
        return self._local


class _SharedAnswer:
    """One request's answer, for every asker of an identical request within a run."""

    def __init__(self) -> None:
        self.started = False
        self.expected = 0  # askers still to take the answer, when known in advance (0: unknown)
        self._done = asyncio.Event()
        self._outcome: CallOutcome | None = None

    def answer(self, outcome: CallOutcome) -> None:
        self._outcome = outcome
        self._done.set()

    def fail(self) -> None:
        """The call was cancelled (the run is stopping): askers stop too."""
        self._done.set()

    async def wait(self) -> CallOutcome:
        await self._done.wait()
        if self._outcome is None:
            raise asyncio.CancelledError
        return self._outcome


class LocalCaller:
    """Executes calls through litellm in this process (retries, timeouts, cost) and stores each answer."""

    def __init__(self, settings: RunSettings, catalog: ModelCatalog, writes: PendingWrites) -> None:
        self.settings = settings
        self.litellm = import_litellm()
        self.random = random.Random(settings.seed)
        self.catalog = catalog
        self.writes = writes
        self._warmed: dict[str, asyncio.Event] = {}  # per provider route: set once its first call is back

    def missing_credentials(self, models: set[str]) -> str | None:
        """What the providers of ``models`` need that the environment lacks, or None."""
        # GitHub Actions passes a secret a fork cannot see as an empty string: that is no key.
        for name in [n for n, value in os.environ.items() if n.endswith("_KEY") and not value.strip()]:
            del os.environ[name]
        for model in sorted(models):
            missing = self.litellm.validate_environment(model).get("missing_keys") or []
            if missing:
                return (f"{model} needs {', '.join(missing)} in the environment (litellm reads it from there); "
                        "set it, or point --api-base at an OpenAI-compatible server")
        return None

    async def call(self, call: Call) -> CallOutcome:
        """The call's outcome, an answer only once it is stored; raises CacheError when it cannot be."""
        refused = refusal(call.model, call.params)
        if refused:  # never attempted: not made without the keys, nor made where they point
            return CallOutcome(call, None, error=f"not sent: {refused}", failure=Failure.REFUSED)
        # A secret the model echoes, or a gateway quotes in an error, goes before the cache or a report sees it.
        outcome = scrubbed(await self._warmed_up(call), "output", "error")
        if outcome.error is None:
            await self.writes.store(to_cached(outcome))
        return outcome

    async def _warmed_up(self, call: Call) -> CallOutcome:
        """The first call to a provider route goes alone, untimed; the others wait for it to come back.

        That call pays for litellm's lazy imports and the client's first connection; timed, it and
        every call in flight beside it would show half a second no prompt change caused.
        """
        route = f"{call.model.split('/', 1)[0]} {self.settings.api_base or ''}"
        warmed = self._warmed.get(route)
        if warmed is not None:
            await warmed.wait()
            return await self._with_retries(call)
        warmed = self._warmed[route] = asyncio.Event()
        try:
            outcome = await self._with_retries(call)
        finally:
            warmed.set()
        return replace(outcome, latency_ms=None)

    async def _with_retries(self, call: Call) -> CallOutcome:
        attempts = self.settings.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._attempt(call, attempt)
            except _Retryable as problem:
                if attempt == attempts:
                    return CallOutcome(call, None, error=f"{problem} (after {attempt} attempts)", attempts=attempt,
                                       failure=Failure.NO_ANSWER)
                await asyncio.sleep(self._delay(attempt, problem.retry_after))
            except Exception as exc:  # a 4xx other than 429, a bad parameter: retrying cannot help
                return CallOutcome(call, None, error=describe_error(exc), attempts=attempt, failure=Failure.NO_ANSWER)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.settings.backoff_cap_s)
        ceiling = min(self.settings.backoff_cap_s, self.settings.backoff_base_s * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + self.random.random() / 2)  # jitter keeps retries from arriving together

    async def _attempt(self, call: Call, attempt: int) -> CallOutcome:
        litellm = self.litellm
        params = provider_params(call.params)
        timeout = float(params.pop("timeout", None) or self.settings.timeout_s)
        started = time.perf_counter()
        try:
            # litellm's defaults otherwise: of its switches for per-call work we never read, none paid when
            # measured alone (bench/eval_bench.py, README Speed): httpx without aiohttp costs 1.5x the CPU,
            # no-log, turn_off_message_logging and disable_end_user_cost_tracking stay within the noise. Its
            # aiohttp_openai/ route costs about 0.6-0.75x the CPU but loses what we read: token counts
            # (always 0), a 4xx's status (every HTTP error is a 500, so retried) and the provider's message,
            # and the timeout (never applied): not used.
            response = await completion_on_loop(
                litellm, model=call.model, messages=call.messages, timeout=timeout, num_retries=0, max_retries=0,
                api_base=self.settings.api_base, api_key=self.settings.api_key, **params,
            )
        except Exception as exc:
            if _retryable(litellm, exc):
                raise _Retryable(describe_error(exc), _retry_after(exc)) from None
            raise
        latency_ms = (time.perf_counter() - started) * 1000
        choices = getattr(response, "choices", None) or []
        content = getattr(getattr(choices[0], "message", None), "content", None) if choices else None
        if content is None:
            raise _Retryable("malformed answer: no choices or no message content")
        usage = getattr(response, "usage", None)
        input_tokens = getattr(usage, "prompt_tokens", None)
        output_tokens = getattr(usage, "completion_tokens", None)
        return CallOutcome(call, content, input_tokens, output_tokens, round(latency_ms, 3),
                           self._cost(call.model, response, usage), attempts=attempt)

    def _cost(self, model: str, response: Any, usage: Any) -> float | None:
        """Our price (litellm's map plus pricing:) over the tokens the provider counted, input it served
        from its prompt cache at the cached-input price; None when unknown."""
        input_tokens = getattr(usage, "prompt_tokens", None)
        output_tokens = getattr(usage, "completion_tokens", None)
        cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None)
        info = self.catalog.get(model)
        if info is not None and input_tokens is not None and output_tokens is not None:
            cost = info.price.call_cost(input_tokens, output_tokens, cached if isinstance(cached, int) else 0)
            if cost is not None:
                return cost
        return litellm_price(self.litellm, response)


# Providers whose answer acompletion turns from a text completion into a chat answer after the call.
_TEXT_COMPLETION_ROUTES = frozenset({"text-completion-openai", "text-completion-codestral",
                                     "text-completion-inception"})


async def completion_on_loop(litellm: Any, *, model: str, messages: list[dict[str, Any]], **params: Any) -> Any:
    """``litellm.acompletion``'s answer or error, without the work around it that promptops never reads.

    acompletion runs ``completion(..., acompletion=True)`` in a thread pool for every call and awaits
    the coroutine it returns, inside a wrapper that builds logging payloads, runs success handlers and
    prices the answer. Calling that ``completion`` here, on the event loop, skips the thread hop and
    the wrapper: 0.60-0.66x the CPU a call of acompletion (bench/eval_bench.py, README Speed). What
    the wrapper gave that we read is kept: completion() needs the logging object it would have made
    (it fails on None), errors are mapped to litellm's typed exceptions as acompletion maps them (their
    status, the provider's message, the Retry-After headers), and ``litellm_price`` prices what our
    catalog cannot. Text-completion routes keep acompletion, which converts their answers to chat.
    """
    _, provider, _, _ = litellm.get_llm_provider(model=model, api_base=params.get("api_base"))
    if provider in _TEXT_COMPLETION_ROUTES:
        return await litellm.acompletion(model=model, messages=messages, **params)
    logging = litellm.Logging(model=model, messages=messages, stream=False, call_type="acompletion",
                              start_time=datetime.datetime.now(), litellm_call_id=str(uuid.uuid4()),
                              function_id="promptops")
    try:
        return await litellm.completion(model=model, messages=messages, acompletion=True,
                                        litellm_logging_obj=logging, **params)
    except Exception as exc:
        raise litellm.exception_type(model=model, original_exception=exc, custom_llm_provider=provider,
                                     completion_kwargs={"model": model, "messages": messages, **params},
                                     extra_kwargs=params) from exc


def litellm_price(litellm: Any, response: Any) -> float | None:
    """litellm's price of an answer (for a model our catalog has no price for), or None when it has none."""
    reported = reported_cost(response)
    if reported is not None:
        return reported
    try:  # completion_on_loop's answers: acompletion's wrapper is what sets response_cost
        cost = litellm.completion_cost(completion_response=response)
    except Exception:  # an unknown model: litellm raises rather than say 0
        return None
    return float(cost) if isinstance(cost, (int, float)) else None


def provider_params(params: dict[str, Any]) -> dict[str, Any]:
    """A prompt's model params as litellm takes them: ``extra`` spread in, ``timeout_s`` as ``timeout``.

    Only the allowlist passes (``promptops.modelparams``): raises RefusedParams, naming every other
    key, rather than drop it (the call would then run unlike the prompt says) or pass it (it could
    send the request and its key elsewhere, fake the answer, or change its price).
    """
    refused = refused_extra(params)
    if refused:
        raise RefusedParams("; ".join(why for _, why in refused))
    passed = {k: v for k, v in params.items() if k not in _OWN_PARAMS}
    passed.update(params.get("extra") or {})
    if params.get("timeout_s"):
        passed["timeout"] = float(params["timeout_s"])
    return passed


def _retryable(litellm: Any, exc: Exception) -> bool:
    if isinstance(exc, (litellm.RateLimitError, litellm.Timeout, litellm.APIConnectionError,
                        litellm.InternalServerError, litellm.ServiceUnavailableError)):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status == 429 or status >= 500)


def _retry_after(exc: Exception) -> float | None:
    """Seconds the provider asked us to wait, from the error's response headers."""
    for headers in (getattr(exc, "litellm_response_headers", None),
                    getattr(getattr(exc, "response", None), "headers", None)):
        if not headers:
            continue
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            value = headers.get(name)
            if value is None:
                continue
            try:
                return float(value) * scale
            except (TypeError, ValueError):  # an HTTP date: rare from model APIs; fall back to backoff
                continue
    return None


def describe_error(exc: BaseException) -> str:
    """The error's kind and first line: no stack, no request body, no key."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
