"""A retrieval config's corpus: the documents its globs name, their metadata, and what is wrong with them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from promptops.loader import Loader
from promptops.retrieval.corpus import load_corpus
from promptops.retrieval.settings import ChunkingSpec, CorpusSpec, RetrievalSettings, filter_matches, known_dimensions


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    write(tmp_path, {
        "docs/refunds.md": "---\nlang: en\ntags: [billing, refunds]\n---\n# Refunds\n\nWithin 30 days.\n",
        "docs/drafts/new.md": "# Draft\n",
        "docs/plain.txt": "Shipping takes 5 days.\n",
        "data/faq.jsonl": '{"id": "q1", "text": "Reset your password.", "lang": "fr"}\n\n{"text": "No id here."}\n',
        "retrieval/kb.retrieval.yaml": "id: kb\n",
    })
    return tmp_path


def test_documents_with_their_ids_and_metadata(project: Path) -> None:
    spec = CorpusSpec(include=("../docs/**/*.md", "../docs/*.txt", "../data/*.jsonl", "../docs/refunds.md"),
                      exclude=("../docs/drafts/**",))
    corpus = load_corpus(spec, project / "retrieval", project)
    assert corpus.problems == ()
    by_id = {d.id: d for d in corpus.documents}
    assert sorted(by_id) == ["data/faq.jsonl#3", "data/faq.jsonl#q1", "docs/plain.txt", "docs/refunds.md"]
    refunds = by_id["docs/refunds.md"]
    assert refunds.metadata == {"lang": "en", "tags": ["billing", "refunds"]}
    assert refunds.text == "# Refunds\n\nWithin 30 days.\n" and refunds.line == 5  # the body, after the front matter
    assert by_id["data/faq.jsonl#q1"].metadata == {"lang": "fr"} and by_id["data/faq.jsonl#3"].line == 3
    assert corpus.fields == {"lang", "tags"}


def test_jsonl_fields_are_configurable(project: Path) -> None:
    write(project, {"data/rows.jsonl": '{"key": "a", "body": "Alpha", "text": "meta, not text"}\n'})
    corpus = load_corpus(CorpusSpec(("../data/rows.jsonl",), text_field="body", id_field="key"),
                         project / "retrieval", project)
    assert [(d.id, d.text, d.metadata) for d in corpus.documents] == [("data/rows.jsonl#a", "Alpha",
                                                                       {"text": "meta, not text"})]


def test_problems_name_the_pattern_or_the_file_and_line(project: Path,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside") / "secret.md"
    outside.write_text("# not ours\n", encoding="utf-8")
    write(project, {"docs/bad.jsonl":
                        '{"id": 1, "text": "fine"}\n[1, 2]\n{"id": 3}\n{oops\n{"id": 1, "text": "again"}\n',
                    "docs/open.md": "---\ntitle: never closed\n# Body\n",
                    "docs/latin1.txt": "", "docs/table.csv": "a,b\n"})
    (project / "docs/latin1.txt").write_bytes(b"caf\xe9\n")
    spec = CorpusSpec(("../docs/*", "../nothing/*.md", str(outside)))
    corpus = load_corpus(spec, project / "retrieval", project)
    problems = {(p.path, p.line, p.pattern): p.message for p in corpus.problems}
    assert problems[(None, 1, 1)] == "corpus.include '../nothing/*.md' matches no file"
    assert "outside the project" in problems[(None, 1, 2)]
    assert problems[("docs/bad.jsonl", 2, None)] == "a corpus line must be a JSON object"
    assert "no string field 'text'" in problems[("docs/bad.jsonl", 3, None)]
    assert problems[("docs/bad.jsonl", 4, None)].startswith("invalid JSON")
    assert "never closed" in problems[("docs/open.md", 1, None)]
    assert "not valid UTF-8 (byte 3)" in problems[("docs/latin1.txt", 1, None)]
    assert "not a corpus format" in problems[("docs/table.csv", 1, None)]
    assert problems[("docs/bad.jsonl", 5, None)] == "the document id 'docs/bad.jsonl#1' is already used on line 1"
    assert len(problems) == 9
    assert [d.text for d in corpus.documents if d.path == "docs/bad.jsonl"] == ["fine"]  # the good line is kept


@pytest.mark.parametrize("metadata, filters, matches", [
    ({"lang": "en"}, {"lang": "en"}, True),
    ({"lang": "en"}, {"lang": "fr"}, False),
    ({"lang": "en"}, {"lang": ["fr", "en"]}, True),
    ({"tags": ["billing", "refunds"]}, {"tags": "refunds"}, True),
    ({"tags": ["billing"]}, {"tags": ["shipping", "returns"]}, False),
    ({}, {"lang": "en"}, False),
    ({"lang": "en", "tier": 2}, {"lang": "en", "tier": 2.0}, True),
    ({"public": True}, {"public": 1}, False),
])
def test_filters(metadata: dict, filters: dict, matches: bool) -> None:
    assert filter_matches(metadata, filters) is matches


def test_known_dimensions_from_the_config_or_the_price_map() -> None:
    assert known_dimensions("openai/text-embedding-3-small", None) == 1536
    assert known_dimensions("text-embedding-3-large", None) == 3072
    assert known_dimensions("ollama/nomic-embed-text", None) is None
    assert known_dimensions("ollama/nomic-embed-text", 768) == 768


def test_lint_reads_the_corpus_without_numpy_or_litellm(project: Path) -> None:
    """The commit path stays light: checking a corpus imports neither the index's numpy nor litellm."""
    (project / "promptops.yaml").write_text("defaults: {model: openai/gpt-4o-mini}\n", encoding="utf-8")
    (project / "retrieval/kb.retrieval.yaml").write_text(
        "id: kb\nembedding: {model: openai/text-embedding-3-small}\nchunking: {size: 256, overlap: 32}\n"
        "retriever: {top_k: 4, filters: {locale: en}}\ncorpus: {include: ['../docs/**/*.md']}\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "promptops", "lint", "retrieval"], cwd=project,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    assert "retrieval/kb.retrieval.yaml:4:33: PO307 no document of the corpus has the field 'locale'" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert {"numpy", "litellm"} & imported == set()
    assert "promptops.retrieval.corpus" in imported  # it did read the corpus


def test_settings_from_a_loaded_retrieval_config(project: Path) -> None:
    path = project / "retrieval/kb.retrieval.yaml"
    path.write_text("id: kb\nembedding: {model: openai/text-embedding-3-small, dimensions: 256}\n"
                    "chunking: {strategy: sentence, size: 200, overlap: 20}\n"
                    "retriever: {top_k: 6, min_score: 0.3, filters: {lang: en}}\n"
                    "reranker: {model: cohere/rerank-v3.5, top_n: 3}\n"
                    "corpus: {include: ['../docs/*.md'], exclude: ['../docs/drafts/*'], text_field: body}\n",
                    encoding="utf-8")
    settings = RetrievalSettings.from_spec(Loader(project).load(path).spec)
    assert settings == RetrievalSettings(
        id="kb", embedding_model="openai/text-embedding-3-small", dimensions=256,
        chunking=ChunkingSpec(200, 20, "sentence", "tokens"), top_k=6, min_score=0.3, filters={"lang": "en"},
        reranker_model="cohere/rerank-v3.5", reranker_top_n=3,
        corpus=CorpusSpec(("../docs/*.md",), ("../docs/drafts/*",), text_field="body"))
    path.write_text("id: kb\nembedding: {model: openai/text-embedding-3-small}\nchunking: {size: 100}\n"
                    "retriever: {top_k: 2}\n", encoding="utf-8")
    bare = RetrievalSettings.from_spec(Loader(project).load(path).spec)
    assert (bare.dimensions, bare.chunking, bare.corpus, bare.filters) == \
        (None, ChunkingSpec(100, 0, "recursive"), None, {})
