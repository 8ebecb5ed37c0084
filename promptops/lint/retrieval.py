"""PO3xx: retrieval configs, alone and as the prompts that use them see them."""

from __future__ import annotations

from collections.abc import Iterator

from promptops.lint.project import LintProject
from promptops.lint.registry import Hit, hit, rule
from promptops.specs import PromptSpec, RetrievalSpec

CHARS_PER_TOKEN = 4  # for chunk sizes given in characters


@rule("PO301", "overlap-too-large", "retrieval")
def overlap_too_large(spec: RetrievalSpec, project: LintProject) -> Iterator[Hit]:
    """Chunk overlap is as large as the chunk itself, so the splitter never
    advances (or produces nothing but repeats).

    Fails:   chunking: {size: 512, overlap: 512}
    Passes:  chunking: {size: 512, overlap: 64}
    """
    if spec.chunk_overlap >= spec.chunk_size:
        yield hit(spec.source, ("chunking", "overlap"),
                  f"chunking.overlap ({spec.chunk_overlap}) must be smaller than chunking.size ({spec.chunk_size})")


@rule("PO302", "rerank-top-n-too-large", "retrieval")
def rerank_top_n_too_large(spec: RetrievalSpec, project: LintProject) -> Iterator[Hit]:
    """The reranker is asked to keep more chunks than the retriever returns, so
    top_n silently means top_k.

    Fails:   retriever: {top_k: 4}   reranker: {top_n: 8}
    Passes:  retriever: {top_k: 20}  reranker: {top_n: 5}
    """
    if spec.reranker_top_n is not None and spec.reranker_top_n > spec.top_k:
        yield hit(spec.source, ("reranker", "top_n"),
                  f"reranker.top_n ({spec.reranker_top_n}) is larger than retriever.top_k ({spec.top_k})")


@rule("PO303", "context-overflow", "prompt")
def context_overflow(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
    """The chunks a prompt receives (reranker top_n, else retriever top_k, times
    the chunk size) do not fit in the prompt model's context window, before the
    rest of the prompt is even counted. Chunk sizes in characters count as
    one token per four characters.

    Fails:   model gpt-4 (8,192 tokens), retriever top_k 12 x chunk size 1,024 tokens
    Passes:  a model with a 128k window, or fewer or smaller chunks.
    """
    if not spec.retrieval_config:
        return
    retrieval = project.retrieval(spec.retrieval_config)
    model = project.models.get(spec.model)
    if retrieval is None or model is None or not model.max_input_tokens:
        return
    per_chunk = retrieval.chunk_size
    if retrieval.chunk_unit == "characters":
        per_chunk = -(-per_chunk // CHARS_PER_TOKEN)
    needed = retrieval.chunks_returned * per_chunk
    if needed > model.max_input_tokens:
        yield hit(spec.source, ("retrieval", "config"),
                  f"{retrieval.chunks_returned} chunks x {per_chunk} tokens = {needed:,} tokens exceed "
                  f"{spec.model}'s context window of {model.max_input_tokens:,}")


@rule("PO304", "unknown-retrieval-config", "prompt")
def unknown_retrieval_config(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
    """`retrieval.config` names a retrieval config that no *.retrieval.yaml in
    the project defines.

    Fails:   retrieval: {config: support_kbb, into: passages}
    Passes:  retrieval: {config: support_kb, into: passages}
    """
    if spec.retrieval_config and project.retrieval(spec.retrieval_config) is None:
        yield hit(spec.source, ("retrieval", "config"), f"no retrieval config has id '{spec.retrieval_config}'")


@rule("PO305", "retrieval-into-undeclared", "prompt")
def retrieval_into_undeclared(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
    """`retrieval.into` must name a declared input (an array of strings) that
    receives the retrieved chunks.

    Fails:   retrieval: {config: support_kb, into: context}   with no input named context
    Passes:  inputs.properties.context: {type: array, items: {type: string}}
    """
    if spec.retrieval_into and spec.retrieval_into not in spec.declared_inputs:
        yield hit(spec.source, ("retrieval", "into"), f"retrieval.into '{spec.retrieval_into}' is not a declared input")


@rule("PO311", "retrieval-query-unusable", "prompt")
def retrieval_query_unusable(spec: PromptSpec, project: LintProject) -> Iterator[Hit]:
    """`retrieval.query` names the input whose text an eval retrieves with: it
    must be a declared input of type string, other than the `retrieval.into`
    input that receives the passages. Otherwise every case that brings no
    passages fails when the eval runs.

    Fails:   retrieval: {config: support_kb, into: passages, query: questoin}
    Passes:  retrieval: {config: support_kb, into: passages, query: question}
             with inputs.properties.question: {type: string}
    """
    query = (spec.raw.get("retrieval") or {}).get("query")
    if not isinstance(query, str) or not query:
        return  # unset: the eval's default (question, else the first text input); a wrong type is the schema's
    declared = spec.declared_inputs
    if query == spec.retrieval_into:
        problem = "is the retrieval.into input, which receives the passages; name the input the question is in"
    elif query not in declared:
        problem = "is not a declared input"
    elif not _may_be_string(declared[query]):
        problem = f"is declared as {declared[query].get('type')}, not a string to query with"
    else:
        return
    yield hit(spec.source, ("retrieval", "query"), f"retrieval.query '{query}' {problem}")


def _may_be_string(schema: object) -> bool:
    """Whether an input's JSON schema lets it be a string (no type given allows one)."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    return kind is None or kind == "string" or (isinstance(kind, list) and "string" in kind)
