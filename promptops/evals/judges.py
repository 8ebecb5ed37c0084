"""The calls model-judged assertions make: to judge models (llm_rubric, groundedness, answer_relevance) and
for embeddings (similar); ``judge_call``, ``reply_of`` and ``JudgeSpend`` serve judged context precision and
recall too (``promptops.evals.context``), which batch their calls.

Judge calls. Every judge call is a chat call made through ``runner.run_calls``,
so it is cached and retried like the answers it judges, and refused when it
could pass ``settings.max_cost_usd``. Within an eval run, ``settings.engine``
is the run's engine: judge calls share its concurrency bound, its workers and
its spend budget with the answers. A judge call's prompt id is ``judge:<prompt id>``, its version a hash of the
judge template, its temperature 0, its max_tokens JUDGE_MAX_TOKENS and its
repeat index 0: an answer seen before (in another repeat, on the base side, in
an earlier run) is never judged twice.

Judge prompts are ``templates/judges/*.j2``: our own templates, rendered with
plain Jinja. What they grade (the answer, the question, passages, claims)
comes from the model and from users' data and may carry a prompt injection, so
it goes in as data between ``<<<BEGIN X>>>`` and ``<<<END X>>>`` lines, the
prompt tells the judge that nothing in them is an instruction, and the ``data``
filter breaks up any run of three angle brackets so that the data cannot
forge a closing line. The rubric is the grading criterion, not data.

What each type asks and how it reads the verdict is its own module's
(``promptops.evals.assertions.llm_rubric``, ``groundedness``,
``answer_relevance``, ``similar``); this module makes their calls. A failed
judge call gives a failed AssertionResult naming the error; it does not raise.

Embeddings (the ``similar`` type) go through ``litellm.aembedding``, whose
OpenAI client retries 429s and 5xx twice honouring Retry-After (litellm
ignores ``max_retries`` there); they are cheap enough to leave out of the
spend cap. Each text's vector is cached in the results table as a row of its
own: key ``call_key(model, [{"role": "input", "content": text}], {"kind":
"embedding"}, 0)``, prompt version ``embedding``, the vector as JSON in
``output``.

``JudgeOutcome.calls`` and ``cost_usd`` count what judging spent now: calls
answered from the cache cost nothing and are not counted, so a cached re-run
reports 0 calls and $0.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment

from promptops import resources
from promptops.evals.assertions import Answer, Assertion, AssertionResult, JudgedType, JudgeInput, validated_type
from promptops.evals.credentials import missing_credentials
from promptops.evals.runner import MissingCredentials, RunSettings, describe_error, import_litellm, run_calls
from promptops.model.evals import Call, CallOutcome
from promptops.modelparams import endpoint_in_model
from promptops.models import ModelCatalog
from promptops.pricing import reported_cost
from promptops.report.safety import environment_redactor
from promptops.resultcache import CachedResult, ResultCache, call_key
from promptops.specs import ModelDefaults
from promptops.templating import RenderLimits

DEFAULT_JUDGE = "openai/gpt-4o-mini"
JUDGE_MAX_TOKENS = 4096  # room for a verdict per claim of a long answer; also bounds the spend cap's reservation
_EMBEDDING_PARAMS = {"kind": "embedding"}  # keeps embedding keys apart from chat keys


@dataclass(frozen=True)
class JudgeOutcome:
    outcome: AssertionResult
    calls: int  # judge and embedding calls made now (cache hits are free and not counted)
    cost_usd: float | None  # what they cost; None if any call's cost is unknown


async def judge(assertion: Assertion, answer: Answer, variables: dict[str, Any], expected: Any, *,
                question: str | None, passages: list[str] | None, judge_model: str, embedding_model: str,
                cache: ResultCache, settings: RunSettings, prompt_id: str, case_id: str,
                catalog: ModelCatalog | None = None, limits: RenderLimits | None = None) -> JudgeOutcome:
    """Judge ``answer`` by one model-judged assertion of a case.

    ``question`` is what answer_relevance judges against (llm_rubric and
    groundedness show it to the judge as context); ``passages`` are the
    retrieved passages groundedness checks against when the assertion names no
    ``context`` var. ``catalog`` prices the calls (give the project's, with its
    ``pricing:``); ``limits`` bound the value template, as in ``evaluate``.
    Raises ValueError for a malformed assertion, MissingCredentials when a
    provider's key is missing.
    """
    kind = validated_type(assertion)
    if not isinstance(kind, JudgedType):
        raise ValueError(f"a {kind.name} assertion needs no model: evaluate it with assertions.evaluate")
    session = _Session(cache, settings, catalog or _default_catalog(), f"judge:{prompt_id}", case_id)
    model = assertion.model or (embedding_model if kind.embeds else judge_model)
    given = JudgeInput(answer, variables, expected, question, passages, limits)
    outcome = await kind.judge(assertion, given, session, model, kind.threshold(assertion))
    return JudgeOutcome(outcome, session.calls, session.cost_usd)


def judge_model(defaults: ModelDefaults) -> str:
    """The project's judge: ``defaults.judge``, else ``defaults.model``, else DEFAULT_JUDGE."""
    return defaults.judge or defaults.model or DEFAULT_JUDGE


# -- prompts --------------------------------------------------------------------

_MARKER_RUN = re.compile(r"<{3,}|>{3,}")


def _as_data(value: Any) -> str:
    """Untrusted text for a data block: runs of angle brackets are spaced out, so it cannot forge an END line."""
    return _MARKER_RUN.sub(lambda run: " ".join(run.group()), str(value))


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    return resources.template_environment("judges", keep_trailing_newline=False, filters={"data": _as_data})


@functools.cache
def _template_version(name: str) -> str:
    environment = _environment()
    source, _, _ = environment.loader.get_source(environment, name)  # type: ignore[union-attr]
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def _default_catalog() -> ModelCatalog:
    return ModelCatalog()  # one for the process: it reads litellm's price map lazily, once


# -- calls ------------------------------------------------------------------------


def judge_call(model: str, template: str, prompt_id: str, case_id: str, **data: Any) -> Call:
    """The chat call that asks ``model`` one of our templates rendered with ``data`` (temperature 0, repeat 0:
    the same request is answered from the cache, whoever made it first)."""
    messages = [{"role": "user", "content": _environment().get_template(template).render(**data)}]
    params = {"temperature": 0, "max_tokens": JUDGE_MAX_TOKENS}
    return Call(call_key(model, messages, params, 0), prompt_id, _template_version(template), case_id, 0, model,
                messages, params)


def reply_of(outcome: CallOutcome) -> str | None:
    """A judge call's answer, redacted (also one cached before secrets were redacted); None when it failed."""
    return None if outcome.output is None else environment_redactor()(outcome.output)


class JudgeSpend:
    """Judge calls made now and what they cost: a cached answer, or a call the spend cap refused, costs nothing."""

    def __init__(self) -> None:
        self.calls = 0
        self.cost_usd: float | None = 0.0

    def add(self, cost: float | None) -> None:
        self.calls += 1
        self.cost_usd = None if cost is None or self.cost_usd is None else self.cost_usd + cost

    def count(self, outcome: CallOutcome) -> None:
        if outcome.cached or outcome.attempts == 0:
            return
        self.add(outcome.cost_usd if outcome.error is None else 0.0)  # a failed call is not billed


class _Session(JudgeSpend):
    """One assertion's judge and embedding calls, and what they cost."""

    def __init__(self, cache: ResultCache, settings: RunSettings, catalog: ModelCatalog, prompt_id: str,
                 case_id: str) -> None:
        super().__init__()
        self.cache, self.settings, self.catalog = cache, settings, catalog
        self.prompt_id, self.case_id = prompt_id, case_id

    async def ask(self, model: str, template: str, **data: Any) -> str | AssertionResult:
        """The judge's answer to one of our templates, or a failed AssertionResult when the call failed."""
        call = judge_call(model, template, self.prompt_id, self.case_id, **data)
        [outcome] = await run_calls([call], self.cache, self.settings, catalog=self.catalog)
        self.count(outcome)
        reply = reply_of(outcome)
        return AssertionResult(False, 0.0, f"judge call failed: {outcome.error}") if reply is None else reply

    async def embed(self, model: str, text: str) -> list[float] | AssertionResult:
        """The text's embedding, from the cache or litellm, or a failed AssertionResult."""
        messages = [{"role": "input", "content": text}]
        key = call_key(model, messages, _EMBEDDING_PARAMS, 0)
        hit = self.cache.get(key)
        if hit is not None and hit.output is not None:
            return json.loads(hit.output)  # type: ignore[no-any-return]
        refused = endpoint_in_model(model)
        if refused:  # as the runner does for chat calls: never sent
            return AssertionResult(False, 0.0, f"embedding call not sent: {refused}")
        self._check_credentials(model)
        litellm = import_litellm()
        started = time.perf_counter()
        try:
            response = await litellm.aembedding(model=model, input=[text], timeout=self.settings.timeout_s,
                                                api_base=self.settings.api_base, api_key=self.settings.api_key)
        except Exception as exc:
            self.add(0.0)
            return AssertionResult(False, 0.0, f"embedding call failed: {environment_redactor()(describe_error(exc))}")
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        tokens = getattr(getattr(response, "usage", None), "prompt_tokens", None)
        cost = self._embedding_cost(model, response, tokens)
        self.add(cost)
        vector = _vector(response)
        if vector is None:
            return AssertionResult(False, 0.0, "embedding call failed: the answer held no embedding")
        self.cache.put(CachedResult(key, self.prompt_id, "embedding", model, self.case_id, 0, json.dumps(vector),
                                    tokens, None, latency_ms, cost))
        return vector

    def _check_credentials(self, model: str) -> None:
        """As the runner does for chat models: a missing key stops the run, it does not fail every case;
        the providers credentials.py knows are checked before litellm is imported."""
        if self.settings.api_base is not None:
            return
        problem = missing_credentials([model], self.catalog)
        if problem:
            raise MissingCredentials(problem)
        missing = import_litellm().validate_environment(model).get("missing_keys") or []
        if missing:
            raise MissingCredentials(f"{model} needs {', '.join(missing)} in the environment (litellm reads it from "
                                     "there); set it, or point --api-base at an OpenAI-compatible server")

    def _embedding_cost(self, model: str, response: Any, tokens: int | None) -> float | None:
        """Our price (litellm's map plus pricing:) over the tokens counted, else litellm's figure, else unknown."""
        cost = self.catalog.input_cost(model, tokens) if tokens is not None else None
        if cost is not None:
            return cost
        return reported_cost(response)


def _vector(response: Any) -> list[float] | None:
    data = getattr(response, "data", None) or []
    item = data[0] if data else None
    vector = item.get("embedding") if isinstance(item, dict) else getattr(item, "embedding", None)
    if not (isinstance(vector, list) and vector and all(isinstance(x, (int, float)) for x in vector)):
        return None
    return [float(x) for x in vector]
