"""The eval runner through the real litellm path, against the project's stub server on loopback."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from promptops.evals.runner import (
    Call,
    MissingCredentials,
    RunSettings,
    _retry_after,
    _retryable,
    completion_on_loop,
    describe_error,
    import_litellm,
    litellm_price,
    run_calls,
)
from promptops.models import ModelCatalog
from promptops.resultcache import ResultCache, call_key
from promptops.testing import Fault, Rule, StubServer

MODEL = "openai/gpt-4o-mini"


@pytest.fixture(scope="module")
def stub_server():
    litellm = import_litellm()
    with StubServer(default_reply="I don't know") as stub:
        litellm.completion(model=MODEL, api_base=stub.base_url, api_key="stub", num_retries=0,
                           messages=[{"role": "user", "content": "warm-up"}])  # litellm's slow first call
        yield stub


@pytest.fixture
def stub(stub_server: StubServer) -> StubServer:
    stub_server.reset(rules=[Rule(match="France", reply="Paris")], faults=[], latency_ms=0, responder=None,
                       cached_tokens=0)
    return stub_server


def calls(count: int, question: str = "Capital of France?", params: dict | None = None) -> list[Call]:
    params = params if params is not None else {"temperature": 0, "max_tokens": 20}
    out = []
    for i in range(count):
        messages = [{"role": "user", "content": f"{question} #{i}"}]
        out.append(Call(call_key(MODEL, messages, params, 0), "geo.capital", "v1", f"c{i}", 0, MODEL, messages, params))
    return out


def settings(stub: StubServer, **changes: object) -> RunSettings:
    base = {"api_base": stub.base_url, "api_key": "stub", "timeout_s": 5.0, "retries": 3,
            "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "seed": 1}
    return RunSettings(**{**base, **changes})  # type: ignore[arg-type]


def run(batch: list[Call], cache: ResultCache, config: RunSettings, **kw: object) -> list:
    return asyncio.run(run_calls(batch, cache, config, **kw))  # type: ignore[arg-type]


def test_answers_usage_cost_and_latency(stub: StubServer, tmp_path: Path) -> None:
    with ResultCache(tmp_path / "cache.db") as cache:
        warm_up, outcome = run(calls(2), cache, settings(stub, concurrency=1))
    assert outcome.error is None and outcome.output == "Paris" and not outcome.cached
    assert outcome.input_tokens and outcome.output_tokens and outcome.latency_ms > 0
    assert warm_up.output == "Paris" and warm_up.latency_ms is None  # the client's warm-up is not timed
    price = ModelCatalog().get(MODEL).price
    expected = outcome.input_tokens * price.input + outcome.output_tokens * price.output
    assert outcome.cost_usd == pytest.approx(expected)


def test_the_first_call_to_a_provider_goes_alone_and_untimed(stub: StubServer, tmp_path: Path) -> None:
    arrivals: list[float] = []

    def answer(request: dict) -> str:
        arrivals.append(time.monotonic())
        return "Paris"

    stub.reset(responder=answer, latency_ms=150)
    with ResultCache(tmp_path / "cache.db") as cache:
        outcomes = run(calls(6), cache, settings(stub, concurrency=6))
    arrivals.sort()
    assert arrivals[1] - arrivals[0] >= 0.14  # the rest waited for the first answer
    assert stub.max_in_flight > 1  # then went together (one at a time, none would overlap its 150 ms)
    assert [o.latency_ms is None for o in outcomes].count(True) == 1
    assert all(o.latency_ms >= 150 for o in outcomes if o.latency_ms is not None)


def test_cached_input_tokens_are_priced_at_the_cached_input_rate() -> None:
    price = ModelCatalog().get(MODEL).price
    assert price.cached_input == pytest.approx(price.input / 2)  # litellm's price map
    full = price.call_cost(1_000, 100)
    cached = price.call_cost(1_000, 100, cached_input_tokens=800)
    assert cached == pytest.approx(full - 800 * (price.input - price.cached_input))
    overridden = ModelCatalog({"acme/ft": {"input": 1.0, "output": 2.0}}).get("acme/ft").price
    assert overridden.call_cost(10, 0, cached_input_tokens=10) == pytest.approx(10 / 1e6)  # no cached rate: input's


def test_cached_input_tokens_the_provider_reports_reach_the_cost(stub: StubServer, tmp_path: Path) -> None:
    stub.reset(cached_tokens=4)  # usage.prompt_tokens_details.cached_tokens, through litellm's openai/ route
    with ResultCache(tmp_path / "cache.db") as cache:
        _, outcome = run(calls(2), cache, settings(stub, concurrency=1))
    price = ModelCatalog().get(MODEL).price
    assert outcome.input_tokens > 4
    assert outcome.cost_usd == pytest.approx(price.call_cost(outcome.input_tokens, outcome.output_tokens, 4))
    assert outcome.cost_usd < price.call_cost(outcome.input_tokens, outcome.output_tokens)


def test_identical_requests_in_flight_are_sent_once(stub: StubServer, tmp_path: Path) -> None:
    stub.reset(latency_ms=100)
    twins = calls(4) + calls(4)  # the same four requests asked twice, as base and head do
    with ResultCache(tmp_path / "cache.db") as cache:
        outcomes = run(twins, cache, settings(stub, concurrency=8))
    assert stub.calls == 4
    assert [o.output for o in outcomes] == ["Paris"] * 8
    assert sum(o.shared for o in outcomes) == 4
    assert {o.call.case_id for o in outcomes if o.shared} == {"c0", "c1", "c2", "c3"}


def test_a_rerun_with_nothing_changed_makes_no_call(stub: StubServer, tmp_path: Path) -> None:
    batch = calls(20)
    with ResultCache(tmp_path / "cache.db") as cache:
        run(batch, cache, settings(stub))
        assert stub.calls == 20
        again = run(batch, cache, settings(stub))
    assert stub.calls == 20
    assert all(o.cached and o.output == "Paris" for o in again)


def test_a_killed_run_repeats_no_finished_call(stub: StubServer, tmp_path: Path) -> None:
    batch = calls(10)
    with ResultCache(tmp_path / "cache.db") as cache:
        run(batch[:6], cache, settings(stub))  # the first six finished before the run was killed
    with ResultCache(tmp_path / "cache.db") as cache:
        outcomes = run(batch, cache, settings(stub))
    assert stub.calls == 10  # 6 + only the 4 missing
    assert [o.cached for o in outcomes] == [True] * 6 + [False] * 4


@pytest.mark.parametrize("fault", [Fault("429", retry_after=0.01), Fault("500"), Fault("503", retry_after=0),
                                   Fault("garbage"), Fault("empty"), Fault("disconnect")])
def test_transient_failures_are_retried(stub: StubServer, tmp_path: Path, fault: Fault) -> None:
    stub.reset(faults=[fault, fault, "ok"])
    with ResultCache(tmp_path / "cache.db") as cache:
        [outcome] = run(calls(1), cache, settings(stub))
    assert outcome.error is None and outcome.output == "Paris" and outcome.attempts == 3


def test_retry_after_is_honoured(stub: StubServer, tmp_path: Path) -> None:
    stub.reset(faults=[Fault("429", retry_after=1), "ok"])
    start = time.perf_counter()
    with ResultCache(tmp_path / "cache.db") as cache:
        [outcome] = run(calls(1), cache, settings(stub, backoff_cap_s=5.0))
    assert outcome.error is None and time.perf_counter() - start >= 0.95


def test_a_timeout_per_attempt_then_success(stub: StubServer, tmp_path: Path) -> None:
    stub.reset(faults=[Fault("timeout", hang_s=10), "ok"])
    start = time.perf_counter()
    with ResultCache(tmp_path / "cache.db") as cache:
        [outcome] = run(calls(1), cache, settings(stub, timeout_s=0.5))
    assert outcome.error is None and outcome.attempts == 2
    assert time.perf_counter() - start < 5


def test_persistent_failure_is_an_outcome_not_a_crash_and_is_not_cached(stub: StubServer, tmp_path: Path) -> None:
    stub.reset(faults=["500"] * 10)
    with ResultCache(tmp_path / "cache.db") as cache:
        [outcome] = run(calls(1), cache, settings(stub, retries=2))
        assert outcome.output is None and "after 3 attempts" in outcome.error
        assert cache.get(outcome.call.key) is None


def test_a_client_error_is_not_retried(stub: StubServer, tmp_path: Path) -> None:
    stub.reset(faults=["400"])
    with ResultCache(tmp_path / "cache.db") as cache:
        [outcome] = run(calls(1), cache, settings(stub))
    assert outcome.attempts == 1 and "BadRequestError" in outcome.error and stub.calls == 1


def test_concurrency_is_bounded(stub: StubServer, tmp_path: Path) -> None:
    stub.reset(latency_ms=200)
    start = time.perf_counter()
    with ResultCache(tmp_path / "cache.db") as cache:
        outcomes = run(calls(8), cache, settings(stub, concurrency=2))
    elapsed = time.perf_counter() - start
    assert all(o.error is None for o in outcomes)
    assert elapsed >= 0.8  # 8 calls of 200 ms, two at a time


def test_the_spend_cap_stops_before_it_is_passed(stub: StubServer, tmp_path: Path) -> None:
    # Each answer is 10,001 output tokens (the stub counts len/4 + 1); each call may produce up to 20,000.
    stub.reset(rules=[Rule(match="France", reply="x" * 40_000)])
    out_price = ModelCatalog().get(MODEL).price.output
    worst = 20_000 * out_price
    batch = calls(10, params={"max_tokens": 20_000})
    with ResultCache(tmp_path / "cache.db") as cache:
        # Room for one answer plus one worst case, not for two answers plus a worst case.
        outcomes = run(batch, cache, settings(stub, max_cost_usd=1.75 * worst, concurrency=1))
    answered = [o for o in outcomes if o.error is None]
    refused = [o for o in outcomes if o.error is not None]
    assert len(answered) == 2 and len(refused) == 8
    assert all("spend cap" in o.error for o in refused)
    assert stub.calls == 2
    assert sum(o.cost_usd for o in answered) <= 1.75 * worst


def test_missing_api_key_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with ResultCache(tmp_path / "cache.db") as cache, pytest.raises(MissingCredentials, match="OPENAI_API_KEY"):
        run(calls(1), cache, RunSettings())


@pytest.mark.parametrize("model", [MODEL, "hosted_vllm/llama-3-8b-instruct"])
def test_each_provider_route_answers_and_reports_the_providers_error(stub: StubServer, tmp_path: Path,
                                                                     model: str) -> None:
    """A call loses nothing on either of litellm's two roads:
    the OpenAI SDK (openai/) and its own HTTP handler (hosted_vllm/, and most OpenAI-compatible routes)."""
    messages = [{"role": "user", "content": "Capital of France?"}]
    params = {"temperature": 0, "max_tokens": 20}
    call = Call(call_key(model, messages, params, 0), "geo.capital", "v1", "c0", 0, model, messages, params)
    stub.reset(rules=[Rule(match="France", reply="Paris")], faults=["400"])
    with ResultCache(tmp_path / "cache.db") as cache:
        [failed] = run([call], cache, settings(stub))
        [answered] = run([call], cache, settings(stub))
        assert cache.get(call.key) is not None
    # The provider's own message reaches the user, with litellm's kind of error.
    assert failed.output is None and failed.attempts == 1 and "BadRequestError" in failed.error
    assert "stub fault: HTTP 400" in failed.error and stub.calls == 2
    assert answered.output == "Paris" and answered.input_tokens and answered.output_tokens


def _fault_seen_by(call_model: Callable[..., Awaitable[Any]], stub: StubServer, fault: object) -> tuple:
    """What promptops reads of a failed call: its description, status, whether retried, Retry-After."""
    stub.reset(faults=[fault])
    litellm = import_litellm()
    try:
        asyncio.run(call_model(model=MODEL, messages=[{"role": "user", "content": "Capital of France?"}],
                               api_base=stub.base_url, api_key="stub", num_retries=0, max_retries=0, timeout=0.5))
    except Exception as exc:
        described = re.sub(r"time taken=[\d.]+", "time taken=...", describe_error(exc))  # a timeout's own clock
        return described, getattr(exc, "status_code", None), _retryable(litellm, exc), _retry_after(exc)
    raise AssertionError(f"{fault} answered")


@pytest.mark.parametrize("fault", ["400", "401", "404", Fault("429", retry_after=2.5), Fault("timeout", hang_s=2),
                                   "garbage", "disconnect", Fault("503", retry_after=1)])
def test_the_call_on_the_loop_fails_as_acompletion_does(stub: StubServer, fault: object) -> None:
    """completion_on_loop skips acompletion's wrapper; a provider's error still arrives as litellm's typed error
    with its status, the provider's message and the Retry-After headers, word for word as acompletion's."""
    litellm = import_litellm()
    ours = _fault_seen_by(functools.partial(completion_on_loop, litellm), stub, fault)
    theirs = _fault_seen_by(litellm.acompletion, stub, fault)
    assert ours == theirs
    kind = fault if isinstance(fault, str) else fault.kind
    if kind.isdigit():
        assert ours[1] == int(kind) and f"stub fault: HTTP {kind}" in ours[0]
    if kind == "429":
        assert ours[0].startswith("RateLimitError") and ours[3] == 2.5


def test_the_call_on_the_loop_answers_as_acompletion_does(stub: StubServer) -> None:
    """The same answer, token counts, cached input tokens and litellm's price (promptops' fallback)."""
    litellm = import_litellm()
    stub.reset(rules=[Rule(match="France", reply="Paris")], cached_tokens=2)
    request = {"model": MODEL, "messages": [{"role": "user", "content": "Capital of France, in a word?"}],
               "api_base": stub.base_url, "api_key": "stub", "num_retries": 0, "max_retries": 0, "timeout": 5.0,
               "temperature": 0, "max_tokens": 20}

    def read(response: Any) -> tuple:
        usage = response.usage
        return (response.choices[0].message.content, usage.prompt_tokens, usage.completion_tokens,
                usage.prompt_tokens_details.cached_tokens, litellm_price(litellm, response))

    ours = read(asyncio.run(completion_on_loop(litellm, **request)))
    theirs = read(asyncio.run(litellm.acompletion(**request)))
    assert ours == theirs
    assert ours[0] == "Paris" and ours[3] == 2 and ours[4] > 0
    assert stub.requests[0] == stub.requests[1]  # the same request sent, parameters mapped alike


class _CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor, recording what is handed to it (the OpenAI SDK's platform check is too)."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.used: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        self.used.append(repr(args[0]) if args else repr(fn))  # asyncio hands it context.run, work
        return super().submit(fn, *args, **kwargs)


def test_calls_run_on_the_event_loop_without_a_thread_hop(stub: StubServer, tmp_path: Path) -> None:
    """The reason for completion_on_loop: litellm.acompletion hands every call to the loop's executor."""
    async def count_hops(work: Callable[[], Awaitable[Any]]) -> list[str]:
        executor = _CountingExecutor()
        asyncio.get_running_loop().set_default_executor(executor)
        await work()
        return executor.used

    litellm = import_litellm()
    request = {"model": MODEL, "messages": [{"role": "user", "content": "Capital of France?"}],
               "api_base": stub.base_url, "api_key": "stub", "num_retries": 0, "max_retries": 0}
    def completions(handed: list[str]) -> int:
        return sum("<function completion at" in work for work in handed)

    assert completions(asyncio.run(count_hops(lambda: litellm.acompletion(**request)))) == 1  # litellm's hop
    with ResultCache(tmp_path / "cache.db") as cache:
        assert completions(asyncio.run(count_hops(lambda: run_calls(calls(3), cache, settings(stub))))) == 0
    assert stub.calls == 4
