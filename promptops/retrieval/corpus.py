"""The documents a retrieval config names in ``corpus:``, read from the repository.

Globs are relative to the retrieval config's folder (``**`` crosses folders)
and must stay inside the project. By suffix, a file is Markdown (``.md``,
``.markdown``; metadata from a YAML front matter block between ``---`` lines),
text (``.txt``; no metadata) or JSONL (``.jsonl``; a document a line, its text
in ``text_field``, its id in ``id_field``, every other field metadata).

A document's id is its path from the project root (``docs/refunds.md``), or for
a JSONL line that path, ``#`` and the line's id (``data/faq.jsonl#q12``; the
line number when it has none). Problems do not stop the reading: each is
returned with the file and line it concerns, and lint reports them.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from promptops.retrieval.settings import CorpusSpec

MAX_FILE_BYTES = 10_000_000
FORMATS = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".jsonl": "jsonl"}


@dataclass(frozen=True)
class Document:
    id: str
    path: str  # from the project root, with forward slashes
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    line: int = 1  # where the text starts in its file (after a front matter; a JSONL line's number)


@dataclass(frozen=True)
class Problem:
    """Something wrong with the corpus: an include glob that matches nothing (``pattern`` set), or a file."""

    message: str
    path: str | None = None  # the corpus file concerned, from the project root
    line: int = 1
    pattern: int | None = None  # the index in ``include`` of a glob that matches no file


@dataclass(frozen=True)
class Corpus:
    documents: tuple[Document, ...]
    problems: tuple[Problem, ...]

    @property
    def fields(self) -> set[str]:
        """Every metadata field some document has."""
        return {name for document in self.documents for name in document.metadata}


def load_corpus(spec: CorpusSpec, folder: Path, root: Path) -> Corpus:
    """Read the documents of ``spec``; ``folder`` holds the retrieval config, ``root`` is the project's root."""
    root = root.resolve()
    documents: list[Document] = []
    problems: list[Problem] = []
    for path in _files(spec, folder, root, problems):
        display = path.relative_to(root).as_posix()
        text = _read(path, display, problems)
        if text is not None:
            documents.extend(_documents(FORMATS[path.suffix.lower()], text, display, spec, problems))
    return Corpus(tuple(_first_of_each_id(documents, problems)), tuple(problems))


def _first_of_each_id(documents: list[Document], problems: list[Problem]) -> list[Document]:
    """A document id names one document: a later one with the same id is a problem, and left out."""
    seen: dict[str, Document] = {}
    for document in documents:
        first = seen.setdefault(document.id, document)
        if first is not document:
            problems.append(Problem(f"the document id '{document.id}' is already used on line {first.line}",
                                    document.path, document.line))
    return list(seen.values())


def _files(spec: CorpusSpec, folder: Path, root: Path, problems: list[Problem]) -> list[Path]:
    """The files the include globs match and the exclude globs do not, each once, sorted."""
    excluded = {Path(folder, match).resolve() for pattern in spec.exclude for match in _glob(pattern, folder)}
    found: dict[Path, None] = {}
    for index, pattern in enumerate(spec.include):
        matches = [Path(folder, m).resolve() for m in _glob(pattern, folder)]
        files = [m for m in matches if m.is_file() and m not in excluded]
        if not files:
            problems.append(Problem(f"corpus.include '{pattern}' matches no file", pattern=index))
        for path in files:
            if not path.is_relative_to(root):
                problems.append(Problem(f"corpus.include '{pattern}' reaches {path}, outside the project",
                                        pattern=index))
            elif path.suffix.lower() not in FORMATS:
                problems.append(Problem(f"is not a corpus format promptops reads ({', '.join(sorted(FORMATS))})",
                                        path.relative_to(root).as_posix()))
            else:
                found[path] = None
    return sorted(found)


def _glob(pattern: str, folder: Path) -> list[str]:
    """Matches relative to ``folder`` (an absolute pattern gives absolute paths, reported if outside)."""
    return glob.glob(pattern, root_dir=folder, recursive=True)


def _read(path: Path, display: str, problems: list[Problem]) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            problems.append(Problem(f"is over {MAX_FILE_BYTES:,} bytes, the most a corpus file may hold", display))
            return None
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(f"is not valid UTF-8 (byte {exc.start})", display))
    except OSError as exc:
        problems.append(Problem(f"cannot be read: {exc.strerror or exc}", display))
    return None


def _documents(kind: str, text: str, display: str, spec: CorpusSpec, problems: list[Problem]) -> list[Document]:
    if kind == "jsonl":
        return _jsonl_documents(text, display, spec, problems)
    if kind == "markdown":
        metadata, body, line = _front_matter(text, display, problems)
        return [Document(display, display, body, metadata, line)]
    return [Document(display, display, text)]


def _front_matter(text: str, display: str, problems: list[Problem]) -> tuple[dict[str, Any], str, int]:
    """A Markdown file's front matter (metadata), its body, and the line the body starts on."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip() != "---":
        return {}, text, 1
    for end in range(1, len(lines)):
        if lines[end].rstrip() in ("---", "..."):
            break
    else:
        problems.append(Problem("its front matter opens with '---' on line 1 and is never closed", display))
        return {}, text, 1
    body = "".join(lines[end + 1:])
    try:
        metadata = yaml.safe_load("".join(lines[1:end]))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problems.append(Problem(f"its front matter is not valid YAML: {getattr(exc, 'problem', None) or exc}",
                                display, line))
        return {}, body, end + 2
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        problems.append(Problem("its front matter must be a mapping of fields", display, 2))
        return {}, body, end + 2
    return {str(k): v for k, v in metadata.items()}, body, end + 2


def _jsonl_documents(text: str, display: str, spec: CorpusSpec, problems: list[Problem]) -> list[Document]:
    documents = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            problems.append(Problem(f"invalid JSON: {exc}", display, number))
            continue
        if not isinstance(row, dict):
            problems.append(Problem("a corpus line must be a JSON object", display, number))
            continue
        body = row.get(spec.text_field)
        if not isinstance(body, str):
            problems.append(Problem(f"the line has no string field '{spec.text_field}' (corpus.text_field)",
                                    display, number))
            continue
        own_id = row.get(spec.id_field)
        metadata = {k: v for k, v in row.items() if k not in (spec.text_field, spec.id_field)}
        suffix = str(own_id) if own_id is not None else str(number)
        documents.append(Document(f"{display}#{suffix}", display, body, metadata, number))
    return documents
