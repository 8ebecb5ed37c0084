"""Model-judged assertions: llm_rubric, groundedness, answer_relevance (judge models) and similar (embeddings).

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

Judge answers are JSON, read tolerantly: the first JSON value of the expected
shape anywhere in the answer (bare, fenced, or inside prose). An answer with
none gives a failed Outcome, "judge answer was not valid JSON"; a failed judge
call gives a failed Outcome naming the error. Neither raises.

- llm_rubric: one call; the judge's ``score`` (0..1) against the assertion's
  threshold (default 0.5) decides. The judge's own ``pass`` stands in only
  when it gives no score: the threshold is the suite's to set.
- groundedness: one call splits the answer into atomic claims, one call
  verdicts each claim against the numbered passages; the score is the share
  supported (no claims: 1, "no factual claims"); threshold 0.8. Verdicts pair
  with claims in order; a claim the judge gave no verdict is unsupported.
- answer_relevance: one call lists the answer's statements, each relevant to
  the question or not; the score is the share relevant; threshold 0.7.
- similar: the cosine similarity (below 0 counts as 0) of the embeddings of
  the output and of the rendered value; threshold 0.8. Embeddings go through
  ``litellm.aembedding``, whose OpenAI client retries 429s and 5xx twice
  honouring Retry-After (litellm ignores ``max_retries`` there); they are
  cheap enough to leave out of the spend cap. Each text's vector is cached in
  the results table as a row of its own: key ``call_key(model, [{"role":
  "input", "content": text}], {"kind": "embedding"}, 0)``, prompt version
  ``embedding``, the vector as JSON in ``output``.

``JudgeOutcome.calls`` and ``cost_usd`` count what judging spent now: calls
answered from the cache cost nothing and are not counted, so a cached re-run
reports 0 calls and $0.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError

from promptops import resources
from promptops.evals.assertions import MODEL_JUDGED, Answer, Outcome, check, clip, render_value
from promptops.evals.credentials import missing_credentials
from promptops.evals.runner import (
    Call,
    CallOutcome,
    MissingCredentials,
    RunSettings,
    describe_error,
    import_litellm,
    run_calls,
)
from promptops.modelparams import endpoint_in_model
from promptops.models import ModelCatalog
from promptops.report.safety import environment_redactor
from promptops.resultcache import CachedResult, ResultCache, call_key
from promptops.templating import RenderLimits

THRESHOLDS = {"llm_rubric": 0.5, "groundedness": 0.8, "answer_relevance": 0.7, "similar": 0.8}
JUDGE_MAX_TOKENS = 4096  # room for a verdict per claim of a long answer; also bounds the spend cap's reservation
NOT_JSON = "judge answer was not valid JSON"
_EMBEDDING_PARAMS = {"kind": "embedding"}  # keeps embedding keys apart from chat keys


@dataclass(frozen=True)
class JudgeOutcome:
    outcome: Outcome
    calls: int  # judge and embedding calls made now (cache hits are free and not counted)
    cost_usd: float | None  # what they cost; None if any call's cost is unknown


async def judge(assertion: dict[str, Any], answer: Answer, variables: dict[str, Any], expected: Any, *,
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
    kind = check(assertion)
    if kind not in MODEL_JUDGED:
        raise ValueError(f"a {kind} assertion needs no model: evaluate it with assertions.evaluate")
    threshold = _threshold(assertion, kind)
    session = _Session(cache, settings, catalog or _default_catalog(), f"judge:{prompt_id}", case_id)
    if kind == "similar":
        outcome = await _similar(session, assertion.get("model") or embedding_model, answer.output,
                                 _value(assertion, variables, expected, limits), threshold)
    else:
        model = assertion.get("model") or judge_model
        if kind == "llm_rubric":
            outcome = await _rubric(session, model, _value(assertion, variables, expected, limits), answer.output,
                                    question, threshold)
        elif kind == "groundedness":
            outcome = await _groundedness(session, model, answer.output, question,
                                          _passages(assertion, variables, passages), threshold)
        else:
            if question is None:
                raise ValueError("an answer_relevance assertion needs the question the answer answers")
            outcome = await _relevance(session, model, answer.output, question, threshold)
    return JudgeOutcome(outcome, session.calls, session.cost_usd)


# -- the assertion's settings ----------------------------------------------


def _threshold(assertion: dict[str, Any], kind: str) -> float:
    value = assertion.get("threshold", THRESHOLDS[kind])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"a {kind} assertion's threshold must be a number from 0 to 1, not {clip(repr(value))}")
    return float(value)


def _value(assertion: dict[str, Any], variables: dict[str, Any], expected: Any,
           limits: RenderLimits | None) -> str | Outcome:
    """The rendered value as text (the rubric, the reference), or a failed Outcome when its template fails."""
    kind = assertion["type"]
    if "value" not in assertion:
        raise ValueError(f"a {kind} assertion needs a value")
    if isinstance(assertion["value"], (list, dict)) or assertion["value"] is None:
        raise ValueError(f"a {kind} assertion's value must be text, not {clip(repr(assertion['value']))}")
    context = {**variables, "vars": variables}  # the same names deterministic values see
    if expected is not None:
        context["expected"] = expected
    try:
        return str(render_value(assertion["value"], context, limits))
    except TemplateError as exc:
        return _failed(f"the value template failed: {clip(str(getattr(exc, 'message', None) or exc), 160)}")


def _passages(assertion: dict[str, Any], variables: dict[str, Any], given: list[str] | None) -> list[str] | Outcome:
    """The passages to check against: the var the assertion's ``context`` names, else those given."""
    name = assertion.get("context")
    if name is None:
        if given is None:
            raise ValueError("a groundedness assertion needs passages: name the var holding them in its context, "
                             "or give the prompt a retrieval config")
        return _texts(given)
    if name not in variables:
        return _failed(f"the case has no var {name!r} holding the passages")
    return _texts(variables[name])


def _texts(value: Any) -> list[str]:
    """Passages as text: a string is one passage; other items (retrieved chunks with metadata) go in as JSON."""
    items = value if isinstance(value, list) else [value]
    return [item if isinstance(item, str) else json.dumps(item, ensure_ascii=False, sort_keys=True)
            for item in items if item is not None]


# -- the judges --------------------------------------------------------------


async def _rubric(session: _Session, model: str, rubric: str | Outcome, output: str, question: str | None,
                  threshold: float) -> Outcome:
    if isinstance(rubric, Outcome):
        return rubric
    reply = await session.ask(model, "rubric.j2", rubric=rubric, question=question, answer=output)
    if isinstance(reply, Outcome):
        return reply
    verdict = _find_json(reply, lambda v: isinstance(v, dict) and ("score" in v or "pass" in v))
    if verdict is None:
        return _failed(NOT_JSON)
    score = verdict.get("score")
    if score is None and isinstance(verdict.get("pass"), bool):
        score = 1.0 if verdict["pass"] else 0.0
    if not _is_fraction(score):
        return _failed(f"judge answer gave no score from 0 to 1 (score: {clip(repr(score))})")
    reason = " ".join(str(verdict.get("reason") or "no reason given").split())  # one line in reports
    return _scored(float(score), threshold, f"rubric score {_mark(score, threshold)}: {clip(reason, 200)}")


async def _groundedness(session: _Session, model: str, output: str, question: str | None,
                        passages: list[str] | Outcome, threshold: float) -> Outcome:
    if isinstance(passages, Outcome):
        return passages
    if not output.strip():
        return _scored(1.0, threshold, "no factual claims")
    reply = await session.ask(model, "claims.j2", question=question, answer=output)
    if isinstance(reply, Outcome):
        return reply
    claims = _find_json(reply, lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v))
    if claims is None:
        return _failed(NOT_JSON)
    claims = [" ".join(claim.split()) for claim in claims if claim.strip()]  # one line each: the list is numbered
    if not claims:
        return _scored(1.0, threshold, "no factual claims")
    reply = await session.ask(model, "verdicts.j2", passages=passages, claims=claims)
    if isinstance(reply, Outcome):
        return reply
    verdicts = _find_json(reply, _is_object_list)
    if verdicts is None:
        return _failed(NOT_JSON)
    supported = [index < len(verdicts) and verdicts[index].get("supported") is True for index in range(len(claims))]
    return _share(claims, supported, threshold, "claims supported", "unsupported", len(verdicts))


async def _relevance(session: _Session, model: str, output: str, question: str, threshold: float) -> Outcome:
    if not output.strip():
        return _scored(0.0, threshold, "output is empty")
    reply = await session.ask(model, "relevance.j2", question=question, answer=output)
    if isinstance(reply, Outcome):
        return reply
    verdicts = _find_json(reply, _is_object_list)
    if verdicts is None:
        return _failed(NOT_JSON)
    if not verdicts:
        return _scored(0.0, threshold, "judge found no statements in the answer")
    statements = [str(v.get("statement", "")) for v in verdicts]
    return _share(statements, [v.get("relevant") is True for v in verdicts], threshold, "statements relevant",
                  "irrelevant", len(verdicts))


async def _similar(session: _Session, model: str, output: str, reference: str | Outcome, threshold: float) -> Outcome:
    if isinstance(reference, Outcome):
        return reference
    if not output.strip() or not reference.strip():
        return _scored(0.0, threshold, "output is empty" if not output.strip() else "the reference text is empty")
    texts = list(dict.fromkeys((output, reference)))  # the same text is embedded once
    vectors = await asyncio.gather(*(session.embed(model, text) for text in texts))
    for vector in vectors:
        if isinstance(vector, Outcome):
            return vector
    score = max(0.0, min(1.0, _cosine(vectors[0], vectors[-1])))  # type: ignore[arg-type]
    return _scored(score, threshold, f"similarity {_mark(score, threshold)} to {clip(repr(reference))}")


# -- scores and reasons --------------------------------------------------------


def _failed(reason: str) -> Outcome:
    return Outcome(False, 0.0, reason)


def _scored(score: float, threshold: float, reason: str) -> Outcome:
    return Outcome(score >= threshold - 1e-9, score, reason)  # 1e-9: a share such as 7/10 need not equal 0.7 exactly


def _mark(score: float, threshold: float) -> str:
    return f"{score:.2f} (threshold {threshold:g})"


def _share(items: list[str], good: list[bool], threshold: float, what: str, bad_name: str, verdicts: int) -> Outcome:
    """The share of ``items`` judged good, naming a few of the others."""
    score = sum(good) / len(items)
    reason = f"{sum(good)} of {len(items)} {what}: {_mark(score, threshold)}"
    if verdicts < len(items):
        reason += f"; the judge gave {verdicts} verdicts for {len(items)}, the rest count against"
    bad = [item for item, ok in zip(items, good) if not ok]
    if bad:
        reason += f"; {bad_name}: {', '.join(repr(clip(item)) for item in bad[:2])}"
    return _scored(score, threshold, reason)


def _is_fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def _is_object_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _cosine(a: list[float], b: list[float]) -> float:
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b)) / norms if norms else 0.0


# -- reading judge answers ------------------------------------------------------

MAX_JSON_STARTS = 100  # places in a judge's answer where its JSON may begin
_OPENERS = re.compile(r"[\[{]")


def _find_json(text: str, wanted: Callable[[Any], bool]) -> Any:
    """The first JSON value in ``text`` that ``wanted`` accepts, or None.

    Tried at every ``[`` and ``{``, so a bare answer, a fenced block and JSON
    amid prose all parse, and a "[1]" in the prose is skipped when a list of
    claims is wanted. At the first MAX_JSON_STARTS of them only: each failed try
    may read to the end of the answer, and an answer of 16,000 brackets took 3 s.
    """
    decoder = json.JSONDecoder()
    for opener in itertools.islice(_OPENERS.finditer(text), MAX_JSON_STARTS):
        try:
            value, _ = decoder.raw_decode(text, opener.start())
        except (ValueError, RecursionError):  # not JSON here; nested past Python's stack
            continue
        if wanted(value):
            return value
    return None


# -- prompts --------------------------------------------------------------------

_MARKER_RUN = re.compile(r"<{3,}|>{3,}")


def _as_data(value: Any) -> str:
    """Untrusted text for a data block: runs of angle brackets are spaced out, so it cannot forge an END line."""
    return _MARKER_RUN.sub(lambda run: " ".join(run.group()), str(value))


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    environment = Environment(loader=FileSystemLoader(str(resources.data_dir("templates") / "judges")),
                              undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True)
    environment.filters["data"] = _as_data
    return environment


@functools.lru_cache(maxsize=None)
def _template_version(name: str) -> str:
    environment = _environment()
    source, _, _ = environment.loader.get_source(environment, name)  # type: ignore[union-attr]
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def _default_catalog() -> ModelCatalog:
    return ModelCatalog()  # one for the process: it reads litellm's price map lazily, once


# -- calls ------------------------------------------------------------------------


class _Session:
    """One assertion's judge and embedding calls, and what they cost."""

    def __init__(self, cache: ResultCache, settings: RunSettings, catalog: ModelCatalog, prompt_id: str,
                 case_id: str) -> None:
        self.cache, self.settings, self.catalog = cache, settings, catalog
        self.prompt_id, self.case_id = prompt_id, case_id
        self.calls = 0
        self.cost_usd: float | None = 0.0

    def _spent(self, cost: float | None) -> None:
        self.calls += 1
        self.cost_usd = None if cost is None or self.cost_usd is None else self.cost_usd + cost

    async def ask(self, model: str, template: str, **data: Any) -> str | Outcome:
        """The judge's answer to one of our templates, or a failed Outcome when the call failed."""
        messages = [{"role": "user", "content": _environment().get_template(template).render(**data)}]
        params = {"temperature": 0, "max_tokens": JUDGE_MAX_TOKENS}
        call = Call(call_key(model, messages, params, 0), self.prompt_id, _template_version(template), self.case_id,
                    0, model, messages, params)
        [outcome] = await run_calls([call], self.cache, self.settings, catalog=self.catalog)
        self._count(outcome)
        if outcome.output is None:
            return _failed(f"judge call failed: {outcome.error}")
        return environment_redactor()(outcome.output)  # also an answer cached before secrets were redacted

    def _count(self, outcome: CallOutcome) -> None:
        if outcome.cached or outcome.attempts == 0:  # from the cache, or refused by the spend cap: nothing spent
            return
        self._spent(outcome.cost_usd if outcome.error is None else 0.0)  # a failed call is not billed

    async def embed(self, model: str, text: str) -> list[float] | Outcome:
        """The text's embedding, from the cache or litellm, or a failed Outcome."""
        messages = [{"role": "input", "content": text}]
        key = call_key(model, messages, _EMBEDDING_PARAMS, 0)
        hit = self.cache.get(key)
        if hit is not None and hit.output is not None:
            return json.loads(hit.output)  # type: ignore[no-any-return]
        refused = endpoint_in_model(model)
        if refused:  # as the runner does for chat calls: never sent
            return _failed(f"embedding call not sent: {refused}")
        self._check_credentials(model)
        litellm = import_litellm()
        started = time.perf_counter()
        try:
            response = await litellm.aembedding(model=model, input=[text], timeout=self.settings.timeout_s,
                                                api_base=self.settings.api_base, api_key=self.settings.api_key)
        except Exception as exc:
            self._spent(0.0)
            return _failed(f"embedding call failed: {environment_redactor()(describe_error(exc))}")
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        tokens = getattr(getattr(response, "usage", None), "prompt_tokens", None)
        cost = self._embedding_cost(model, response, tokens)
        self._spent(cost)
        vector = _vector(response)
        if vector is None:
            return _failed("embedding call failed: the answer held no embedding")
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
        info = self.catalog.get(model)
        cost = info.price.call_cost(tokens, 0) if info is not None and tokens is not None else None
        if cost is not None:
            return cost
        cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        return float(cost) if isinstance(cost, (int, float)) else None


def _vector(response: Any) -> list[float] | None:
    data = getattr(response, "data", None) or []
    item = data[0] if data else None
    vector = item.get("embedding") if isinstance(item, dict) else getattr(item, "embedding", None)
    if not (isinstance(vector, list) and vector and all(isinstance(x, (int, float)) for x in vector)):
        return None
    return [float(x) for x in vector]
