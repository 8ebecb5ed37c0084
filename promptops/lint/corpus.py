"""PO306-PO309: a retrieval config's corpus and what the index needs to know, checked before anything is embedded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from promptops.findings import Severity
from promptops.lint.project import LintProject
from promptops.lint.registry import Hit, hit, rule
from promptops.specs import RetrievalSpec, Source

if TYPE_CHECKING:
    from promptops.retrieval.corpus import Corpus

# A corpus is read once per lint run (LintProject), however many rules ask.
_READ: WeakKeyDictionary[LintProject, dict[Path, Corpus | None]] = WeakKeyDictionary()


def corpus_of(spec: RetrievalSpec, project: LintProject) -> Corpus | None:
    """The config's documents, or None when it names no corpus."""
    # Imported here: a commit that touches no retrieval file pays nothing for the corpus reader.
    from promptops.retrieval.corpus import load_corpus
    from promptops.retrieval.settings import CorpusSpec

    read = _READ.setdefault(project, {})
    if spec.source.path not in read:
        corpus_spec = CorpusSpec.from_raw(spec.raw.get("corpus"))
        read[spec.source.path] = (None if corpus_spec is None
                                  else load_corpus(corpus_spec, spec.source.path.parent, project.root))
    return read[spec.source.path]


@rule("PO306", "corpus-missing", "retrieval")
def corpus_missing(spec: RetrievalSpec, project: LintProject) -> Iterator[Hit]:
    """A `corpus.include` glob matches no file, or reaches outside the project
    (an absolute path, or ../ that leaves it): the index would silently lack
    those documents. Globs are relative to the retrieval config's folder.

    Fails:   corpus: {include: [help/*.md]}        with no Markdown file in help/
    Passes:  corpus: {include: [../docs/help/*.md]} naming files that exist
    """
    corpus = corpus_of(spec, project)
    for problem in corpus.problems if corpus else ():
        if problem.pattern is not None:
            yield hit(spec.source, ("corpus", "include", problem.pattern), problem.message)


@rule("PO307", "unknown-filter-field", "retrieval")
def unknown_filter_field(spec: RetrievalSpec, project: LintProject) -> Iterator[Hit]:
    """`retriever.filters` names a metadata field that no document of the
    corpus has, so the filter drops every chunk. Metadata comes from a Markdown
    file's front matter and from a JSONL line's fields.

    Fails:   retriever: {top_k: 8, filters: {lang: en}}   with no document that sets lang
    Passes:  a front matter of `lang: en` in the corpus's documents
    """
    corpus = corpus_of(spec, project)
    filters = (spec.raw.get("retriever") or {}).get("filters") or {}
    if corpus is None or not corpus.documents:
        return
    known = corpus.fields
    for name in filters:
        if name not in known:
            have = ", ".join(sorted(known)) or "none"
            yield hit(spec.source, ("retriever", "filters", name), f"no document of the corpus has the field "
                      f"'{name}' that retriever.filters names (fields the documents have: {have})", key=True)


@rule("PO308", "unknown-embedding-dimensions", "retrieval", Severity.WARNING)
def unknown_embedding_dimensions(spec: RetrievalSpec, project: LintProject) -> Iterator[Hit]:
    """Neither `embedding.dimensions` nor litellm's price map gives the
    embedding model's vector size, so an index built with it cannot be checked
    against the model (a changed size would only show when a search fails).

    Fails:   embedding: {model: ollama/nomic-embed-text}
    Passes:  embedding: {model: ollama/nomic-embed-text, dimensions: 768}
    """
    from promptops.retrieval.settings import known_dimensions

    dimensions = (spec.raw.get("embedding") or {}).get("dimensions")
    if known_dimensions(spec.embedding_model, dimensions) is None:
        yield hit(spec.source, ("embedding", "model"), f"the vector size of '{spec.embedding_model}' is not known: "
                  "set embedding.dimensions")


@rule("PO309", "corpus-invalid", "retrieval")
def corpus_invalid(spec: RetrievalSpec, project: LintProject) -> Iterator[Hit]:
    """A corpus file cannot be read as a document: not UTF-8, over 10 MB, not
    Markdown, text or JSONL, a front matter that is not a YAML mapping, a
    JSONL line that is not an object with a string text field, or a document
    id used twice (two JSONL lines with one id). The finding names the corpus
    file and line.

    Fails:   {"id": "q1", "body": "Refunds take 30 days"}   (the text field is `text` unless corpus.text_field says)
    Passes:  {"id": "q1", "text": "Refunds take 30 days", "lang": "en"}
    """
    corpus = corpus_of(spec, project)
    for problem in corpus.problems if corpus else ():
        if problem.path is not None:
            yield Hit(Source(project.root / problem.path, problem.path), problem.line, 1, problem.message)
