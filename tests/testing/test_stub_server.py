"""promptops.testing's stub server, exercised through the real litellm code path.

Every model call goes ``litellm.completion`` / ``acompletion`` / ``embedding``
-> the openai SDK -> httpx -> a loopback socket -> the stub, as the eval runner's
and users' calls will. litellm is imported once for the module (about 2.5 s);
calls that meet a fault pass ``max_retries=0`` so the SDK's own retries do not
hide it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from promptops.evals.judges import judge_call
from promptops.testing import Fault, Rule, StubServer, WordJudge, embed, load_rules

USER = [{"role": "user", "content": "What is the capital of France?"}]
NO_RETRY = {"max_retries": 0, "num_retries": 0}


@pytest.fixture(scope="module")
def litellm() -> Iterator[ModuleType]:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # else the import fetches a price map over the network
    import litellm

    litellm.suppress_debug_info = True
    with StubServer(default_reply="warm") as stub:  # the first call is slow (lazy imports); pay it once here
        litellm.completion(**stub.client_kwargs(), messages=USER)
    yield litellm


def ask(litellm: ModuleType, stub: StubServer, text: str, **kwargs: Any) -> Any:
    return litellm.completion(**stub.client_kwargs(kwargs.pop("model", "stub")),
                              messages=[{"role": "user", "content": text}], **kwargs)


def test_scripted_default_and_regex_replies(litellm: ModuleType) -> None:
    rules = [
        Rule(match="capital of France", reply="Paris"),
        Rule(match=r"re:(?i)capital of (?P<country>\w+)", reply='{"capital_of": "{country}", "asked": "{0}"}'),
    ]
    with StubServer(rules=rules, default_reply="I don't know") as stub:
        assert ask(litellm, stub, "What is the capital of France?").choices[0].message.content == "Paris"
        # Groups fill the template; braces that name no group (JSON) stay as they are.
        reply = ask(litellm, stub, "CAPITAL OF Peru, please").choices[0].message.content
        assert json.loads(reply) == {"capital_of": "Peru", "asked": "CAPITAL OF Peru"}
        assert ask(litellm, stub, "What's the weather?").choices[0].message.content == "I don't know"


def test_rules_on_model_and_system_message(litellm: ModuleType) -> None:
    rules = [
        Rule(model="re:^gpt-4o$", reply="from the big model"),
        Rule(system="pirate", match="hello", reply="Ahoy"),
    ]
    with StubServer(rules=rules, default_reply="plain") as stub:
        # litellm strips the provider prefix: the server sees "gpt-4o".
        assert ask(litellm, stub, "hello", model="gpt-4o").choices[0].message.content == "from the big model"
        assert ask(litellm, stub, "hello", model="gpt-4o-mini").choices[0].message.content == "plain"
        pirate = litellm.completion(**stub.client_kwargs(), messages=[
            {"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "hello there"}])
        assert pirate.choices[0].message.content == "Ahoy"


def test_requests_are_recorded_and_usage_is_counted(litellm: ModuleType) -> None:
    with StubServer(default_reply="twelve chars") as stub:
        response = ask(litellm, stub, "0123456789", temperature=0.2, max_tokens=50)
        assert stub.calls == 1
        body = stub.requests[0]
        assert body["model"] == "stub"
        assert body["messages"] == [{"role": "user", "content": "0123456789"}]
        assert body["temperature"] == 0.2 and body["max_tokens"] == 50
        # len(text) // 4 + 1, deterministic.
        usage = response.usage
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 4, 7)
        assert response.choices[0].finish_reason == "stop"
        stub.reset(default_reply="after reset")
        assert stub.calls == 0 and ask(litellm, stub, "x").choices[0].message.content == "after reset"


def test_cached_tokens_are_reported_up_to_the_prompts(litellm: ModuleType) -> None:
    with StubServer(default_reply="ok", cached_tokens=2) as stub:
        assert ask(litellm, stub, "0123456789").usage.prompt_tokens_details.cached_tokens == 2
        stub.reset(cached_tokens=50)
        usage = ask(litellm, stub, "0123456789").usage
        assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens == 3
        stub.reset(cached_tokens=0)
        assert ask(litellm, stub, "0123456789").usage.prompt_tokens_details is None


def test_max_tokens_cuts_the_reply(litellm: ModuleType) -> None:
    with StubServer(default_reply="word " * 100) as stub:
        response = ask(litellm, stub, "talk", max_tokens=5)
        assert response.choices[0].finish_reason == "length"
        assert response.usage.completion_tokens == 5


def test_responder_has_full_control(litellm: ModuleType) -> None:
    def responder(request: dict[str, Any]) -> str | Fault | None:
        text = request["messages"][-1]["content"]
        if text == "fail":
            return Fault("500")
        if text == "bug":
            raise KeyError("oops")
        return text.upper() if text.startswith("shout") else None  # None: the rules answer

    with StubServer(rules=[Rule(match="hi", reply="rule")], responder=responder) as stub:
        assert ask(litellm, stub, "shout this").choices[0].message.content == "SHOUT THIS"
        assert ask(litellm, stub, "hi").choices[0].message.content == "rule"
        with pytest.raises(litellm.InternalServerError):
            ask(litellm, stub, "fail", **NO_RETRY)
        with pytest.raises(litellm.InternalServerError, match="stub responder failed: KeyError"):
            ask(litellm, stub, "bug", **NO_RETRY)
        assert ask(litellm, stub, "hi").choices[0].message.content == "rule"  # still serving


def test_429_carries_retry_after_to_the_client(litellm: ModuleType) -> None:
    with StubServer(default_reply="fine", faults=[Fault("429", retry_after=7), "ok"]) as stub:
        with pytest.raises(litellm.RateLimitError) as caught:
            ask(litellm, stub, "hi", **NO_RETRY)
        assert caught.value.litellm_response_headers["retry-after"] == "7"
        assert ask(litellm, stub, "hi", **NO_RETRY).choices[0].message.content == "fine"


def test_the_sdk_honours_retry_after_when_it_retries(litellm: ModuleType) -> None:
    with StubServer(default_reply="fine", faults=[Fault("429", retry_after=0.3)]) as stub:
        started = time.perf_counter()
        assert ask(litellm, stub, "hi", max_retries=1).choices[0].message.content == "fine"
        assert time.perf_counter() - started >= 0.3
        assert stub.calls == 2


def test_500_is_an_internal_server_error(litellm: ModuleType) -> None:
    with StubServer(faults=["500"]) as stub, pytest.raises(litellm.InternalServerError):
        ask(litellm, stub, "hi", **NO_RETRY)


def test_fail_first_then_reply(litellm: ModuleType) -> None:
    with StubServer(rules=[Rule(match="flaky", reply="made it", fail_first=2, fault="429")]) as stub:
        for _ in range(2):
            with pytest.raises(litellm.RateLimitError):
                ask(litellm, stub, "flaky call", **NO_RETRY)
        assert ask(litellm, stub, "flaky call", **NO_RETRY).choices[0].message.content == "made it"


def test_timeout_raises_within_the_client_timeout(litellm: ModuleType) -> None:
    with StubServer(faults=[Fault("timeout", hang_s=60)]) as stub:
        started = time.perf_counter()
        with pytest.raises(litellm.Timeout):
            ask(litellm, stub, "hi", timeout=0.5, **NO_RETRY)
        assert time.perf_counter() - started < 10  # the client's 0.5 s, not the server's 60 (slack for a busy machine)


def test_garbage_and_disconnect_raise_at_once(litellm: ModuleType) -> None:
    with StubServer(faults=["garbage", "disconnect"]) as stub:
        for _ in range(2):
            started = time.perf_counter()
            with pytest.raises(litellm.InternalServerError):  # litellm maps both to a 500-class error
                ask(litellm, stub, "hi", timeout=30, **NO_RETRY)
            assert time.perf_counter() - started < 10  # at once, not at the 30 s timeout (slack for a busy machine)


def test_empty_choices_reach_the_caller(litellm: ModuleType) -> None:
    with StubServer(faults=["empty"], default_reply="x") as stub:
        assert ask(litellm, stub, "hi", **NO_RETRY).choices == []


# litellm's own stream handling warns about pydantic internals; nothing to do with the stub.
@pytest.mark.filterwarnings("ignore::UserWarning:pydantic", "ignore::DeprecationWarning:litellm")
def test_streaming(litellm: ModuleType) -> None:
    with StubServer(default_reply="one two  three") as stub:
        chunks = list(ask(litellm, stub, "hi", stream=True, stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two  three"
        assert [c.usage.completion_tokens for c in chunks if getattr(c, "usage", None)] == [4]


def test_embeddings_shape_and_determinism(litellm: ModuleType) -> None:
    texts = ["refunds within 30 days", "refunds within 30 days of purchase", "the weather in Paris"]
    with StubServer(embedding_dim=64) as stub:
        first = litellm.embedding(model="openai/text-embedding-3-small", api_base=stub.base_url, api_key="stub",
                                  input=texts)
        again = litellm.embedding(model="openai/text-embedding-3-small", api_base=stub.base_url, api_key="stub",
                                  input=texts[:1], dimensions=32)
    vectors = [d["embedding"] for d in first.data]
    assert [len(v) for v in vectors] == [64, 64, 64]
    assert all(math.isclose(sum(x * x for x in v), 1.0) for v in vectors)
    assert vectors[0] == embed(texts[0], 64)  # the same text, the same vector
    assert len(again.data[0]["embedding"]) == 32

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b))

    assert cosine(vectors[0], vectors[1]) > 0.6 > abs(cosine(vectors[0], vectors[2]))
    assert first.usage.prompt_tokens > 0


RERANK_DOCS = ["Shipping takes 5 business days.", "Refunds are accepted within 30 days: that is the refund window.",
               "Our office is in Paris.", "A refund needs the order number."]


def test_rerank_through_litellms_cohere_route(litellm: ModuleType) -> None:
    """litellm's cohere/ provider with the stub as api_base posts Cohere's v2 body to /v1/v2/rerank."""
    with StubServer() as stub:
        answer = asyncio.run(litellm.arerank(model="cohere/rerank-v3.5", query="refund window in days",
                                             documents=RERANK_DOCS, top_n=3, api_base=stub.base_url, api_key="stub"))
        body = stub.requests[0]
    # refund, window, days: 3 of the query's 4 words; then one word each, ties in document order
    assert [r["index"] for r in answer.results] == [1, 0, 2]
    assert [r["relevance_score"] for r in answer.results] == [0.75, 0.25, 0.25]
    assert body["query"] == "refund window in days" and body["top_n"] == 3 and body["documents"] == RERANK_DOCS


def test_rerank_returns_documents_and_takes_faults(litellm: ModuleType) -> None:
    with StubServer(faults=["429"]) as stub:
        with pytest.raises(litellm.RateLimitError):
            litellm.rerank(model="cohere/rerank-v3.5", query="office", documents=RERANK_DOCS, api_base=stub.base_url,
                           api_key="stub", **NO_RETRY)
        answer = litellm.rerank(model="cohere/rerank-v3.5", query="office", documents=RERANK_DOCS, top_n=1,
                                return_documents=True, api_base=stub.base_url, api_key="stub")
    assert answer.results[0]["index"] == 2 and answer.results[0]["document"]["text"] == RERANK_DOCS[2]


def test_rerank_rejects_a_body_without_documents() -> None:
    with StubServer() as stub:
        request = urllib.request.Request(f"{stub.base_url}/rerank", data=json.dumps({"query": "q"}).encode(),
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400 and "documents" in json.loads(caught.value.read())["error"]["message"]


def test_latency_is_at_least_latency_ms(litellm: ModuleType) -> None:
    with StubServer(default_reply="slow", latency_ms=150, jitter_ms=50, seed=1) as stub:
        started = time.perf_counter()
        ask(litellm, stub, "hi")
        assert time.perf_counter() - started >= 0.15


def test_many_concurrent_async_calls_are_all_answered(litellm: ModuleType) -> None:
    async def run(stub: StubServer) -> list[Any]:
        calls = [litellm.acompletion(**stub.client_kwargs(), messages=[{"role": "user", "content": f"n={i}"}])
                 for i in range(200)]
        return await asyncio.gather(*calls)

    with StubServer(rules=[Rule(match=r"re:n=(\d+)", reply="got {1}")], latency_ms=20) as stub:
        responses = asyncio.run(run(stub))
        assert [r.choices[0].message.content for r in responses] == [f"got {i}" for i in range(200)]
        assert stub.calls == 200 and len(stub.requests) == 200
        started = time.perf_counter()
    # Idle keep-alive connections do not hold up the stop: they would hold it until the client closes them.
    assert time.perf_counter() - started < 5


def test_stop_is_quick_with_a_request_held_by_a_timeout(litellm: ModuleType) -> None:
    stub = StubServer(faults=["timeout"]).start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            ask(litellm, stub, "hi", timeout=60, **NO_RETRY)
        except Exception as err:
            errors.append(err)

    client = threading.Thread(target=call)
    client.start()
    try:
        deadline = time.monotonic() + 30
        while stub.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.perf_counter()
        stub.stop()
        assert time.perf_counter() - started < 10  # not the hour the fault holds it, nor the client's 60 s
        client.join(30)
        assert not client.is_alive() and errors  # the held request was dropped, not left hanging
    finally:
        stub.stop()
        client.join()


def test_base_url_from_the_environment(litellm: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    with StubServer(default_reply="via env") as stub:
        for name, value in stub.env().items():
            monkeypatch.setenv(name, value)
        response = litellm.completion(model="openai/gpt-4o-mini", messages=USER)
        assert response.choices[0].message.content == "via env"


def test_plain_http_models_and_errors() -> None:
    def fetch(path: str, data: bytes | None = None) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(stub.base_url + path, data=data, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    with StubServer(models=["gpt-4o-mini", "text-embedding-3-small"]) as stub:
        assert fetch("/models") == (200, {"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "promptops-stub"}
            for m in ("gpt-4o-mini", "text-embedding-3-small")]})
        status, body = fetch("/nowhere", b"{}")
        assert status == 404 and body["error"]["code"] == "not_found"
        status, body = fetch("/chat/completions", b"not json")
        assert status == 400 and body["error"]["type"] == "invalid_request_error"
        status, body = fetch("/chat/completions", b'{"model": "m"}')
        assert status == 400 and "messages" in body["error"]["message"]
        assert stub.calls == 0  # only answerable requests are recorded


def test_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("""\
- match: "re:capital of (\\\\w+)"
  reply: "It is {1}"
- match: busy
  reply: {fault: "429", retry_after: 2}
- match: flaky
  faults: [timeout, ok]
""")
    rules = load_rules(path)
    assert rules[0].reply_for({"messages": USER}) == "It is France"
    assert rules[1].reply == Fault("429", retry_after=2)
    assert rules[2].fault_sequence == (Fault("timeout"), None)
    path.write_text("- match: x\n  replly: typo\n")
    with pytest.raises(ValueError, match="replly"):
        load_rules(path)


def test_cli_serves_a_rules_file(litellm: ModuleType, tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"default_reply": "from the CLI", "rules": [{"match": "ping", "reply": "pong"}]}))
    server = subprocess.Popen([sys.executable, "-m", "promptops.testing", "--port", "0", "--rules", str(rules),
                               "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        kwargs = {"model": "openai/any", "api_base": base_url, "api_key": "stub"}
        ping = [{"role": "user", "content": "ping"}]
        assert litellm.completion(**kwargs, messages=ping).choices[0].message.content == "pong"
        assert litellm.completion(**kwargs, messages=USER).choices[0].message.content == "from the CLI"
    finally:
        server.send_signal(2)  # Ctrl-C
        try:
            code = server.wait(30)
        finally:
            server.kill()  # only if Ctrl-C did not stop it: nothing is left running either way
            server.wait()
    assert code == 0


def test_word_judge_answers_promptops_retrieval_judge_prompts_by_shared_words() -> None:
    """On the prompts the judges render (a template changed so that it no longer recognises them fails here)."""
    def asked(judge: WordJudge, template: str, **data: Any) -> Any:
        messages = judge_call("m", template, "judge:p", "c", **data).messages
        reply = judge({"messages": messages})
        return None if reply is None else json.loads(reply)

    judge = WordJudge()
    question = "How often should I oil the chain?"
    assert asked(judge, "passage.j2", question=question, passage="Oil the chain every 300 km.")["relevant"] is True
    assert asked(judge, "passage.j2", question=question, passage="Tyres run at 6 bar.")["relevant"] is False
    assert asked(WordJudge(min_shared=2), "passage.j2", question=question,
                 passage="Clean the chain.")["relevant"] is False
    assert asked(judge, "claims.j2", question=question, answer="Every 300 km. Use dry lube!") == \
        ["Every 300 km.", "Use dry lube!"]
    verdicts = asked(judge, "verdicts.j2", passages=["Oil it every 300 km.", "Use a dry lube."],
                     claims=["Every 300 km.", "Use a wet lube."])
    assert [v["supported"] for v in verdicts] == [True, False]
    assert asked(judge, "rubric.j2", rubric="Is polite", question=None, answer="Hi") is None  # the rules answer


def test_word_judge_noise_is_seeded_and_at_its_rate() -> None:
    def verdicts(seed: int) -> list[bool]:
        judge = WordJudge(error_rate=0.2, seed=seed)
        return [json.loads(judge({"messages": judge_call("m", "passage.j2", "j", "c", question="oil the chain",
                                                              passage=f"chain {i}").messages}) or "{}")["relevant"]
                for i in range(500)]

    first = verdicts(1)
    assert first == verdicts(1) and first != verdicts(2)
    assert 0.15 < first.count(False) / 500 < 0.25  # every passage shares "chain": each False is an error
