"""Offline token counts for chat requests, never a download.

OpenAI models are counted with their real tiktoken encoding, chosen as litellm
chooses it (``openai_tokenizer_encoding_name``) but without importing litellm,
whose import costs seconds. Other models have no tokenizer we can run offline
and are approximated with cl100k_base, as litellm does too.

tiktoken reads its encodings from ``TIKTOKEN_CACHE_DIR``, under the sha1 of the
URL it would download them from; litellm ships those files, but only points
tiktoken at them when litellm itself is imported. So, unless the user chose a
folder, ``TIKTOKEN_CACHE_DIR`` is set to litellm's copies here, and an encoding
is loaded only once its file is there and intact (tiktoken deletes a file that
fails its hash and downloads it again). Without the file, counts fall back to
``ceil(len(text) / 4)``, and the method says so.

Reading such a file decodes 200,000 base64 lines in Python (half a second for
o200k_base), and building tiktoken's encoder from them takes a fifth of a
second or more: most of a commit hook's budget, while a commit's texts use a
few thousand tokens. So the first count writes the vocabulary to promptops'
cache folder (``vocabulary.py``), and a small batch is counted by an encoder
built from only the tokens that occur in its texts (``_count_units``), which
gives the same counts: tiktoken splits a text into pieces with its pattern
and looks up nothing but parts of a piece, so every token it can use is
there. Units counted once are remembered in that file. Large batches, and new
units past a budget, use the whole encoder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptops.model.cost import TokenMethod

if TYPE_CHECKING:
    from tiktoken import Encoding

    from promptops.estimate.vocabulary import Vocabulary

APPROXIMATION = "cl100k_base"  # litellm's default for models tiktoken does not know
FALLBACK = "chars/4"
CHARS_PER_TOKEN = 4

# The framing OpenAI documents for chat requests ("How to count tokens with tiktoken"), as litellm counts it.
TOKENS_PER_MESSAGE = 3  # <|start|>{role}<|message|>{content}<|end|>
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3  # <|start|>assistant<|message|>

_DOWNLOADS = "https://openaipublic.blob.core.windows.net/encodings/"
# What tiktoken would download for each encoding, and the sha256 it checks (tiktoken_ext/openai_public.py).
_SOURCES: dict[str, tuple[str, str]] = {
    "r50k_base": ("r50k_base.tiktoken", "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"),
    "p50k_base": ("p50k_base.tiktoken", "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"),
    "p50k_edit": ("p50k_base.tiktoken", "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"),
    "cl100k_base": ("cl100k_base.tiktoken", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
    "o200k_base": ("o200k_base.tiktoken", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
    "o200k_harmony": ("o200k_base.tiktoken", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
}


# Unicode's White_Space characters: what \s means in tiktoken's patterns (the Rust regex crate).
_WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Cut a text where a character that is not white space is followed by white space other than \r or \n.
# In tiktoken's patterns (below) no piece holds such a pair: a piece has white space only first (" word"),
# only white space, or \r and \n after punctuation ("!\n"); their one lookahead, (?!\S), and $ look no
# further than the white space that follows. So the pieces of a text are the pieces of its units, one
# unit after the other, and its count the sum of theirs.
_UNIT_BOUNDARY = re.compile(f"(?<=[^{_WHITE_SPACE}])(?=[{_WHITE_SPACE.replace(chr(10), '').replace(chr(13), '')}])")
# sha256 of the split patterns that reasoning holds for: r50k_base and p50k_base, cl100k_base, o200k_base
# (tiktoken 0.12 to 0.14). An encoding with another pattern is always counted by its whole encoder.
_UNIT_PATTERNS = frozenset({
    "bf51d578af57187876ec1c8a34fb0ee2fb3025c50ce663ac154b633ae39de092",
    "f021c3d976978e62ee64cdad150cc3405c2e3d6e3b40407850bb9e8d9eb65899",
    "2d1b8dc11e89af71459b36004f698ab3693f59fd84f63e8ec2b49564ab857420",
})
# New units past this many vocabulary look-ups, or after this many encoders built from a part of the
# vocabulary in one process, are counted by the whole encoder: building it (0.2 to 0.5 s) then costs less.
UNIT_LOOKUPS_LIMIT = 400_000
UNIT_ENCODERS_LIMIT = 8
# Distinct text past this many characters is counted whole, on every core, without splitting it into units.
UNITS_UP_TO_CHARS = 2_000_000


class TokenCounter:
    """Counts tokens offline; encodings load lazily, once per process, and are shared by all counters."""

    def method(self, model: str) -> TokenMethod:
        return _method(model)

    def count_text(self, model: str, text: str) -> int:
        return _text_counter(_method(model))(text)

    def count_messages(self, model: str, messages: list[dict[str, str]]) -> int:
        """Input tokens of a chat request: content tokens plus the per-message framing OpenAI documents
        (3 per message, +1 if a name is set, +3 for the reply priming).

        Like OpenAI's recipe and litellm, every value of a message is counted (role and name too).
        """
        return _framed(messages, _text_counter(_method(model)))

    def count_many(self, model: str, texts: list[str]) -> list[int]:
        """``count_text`` of each text; each distinct text is counted once, as the sum of its units' counts
        (``_count_units``), or whole by the whole encoder on every core: for a large batch, or once the
        whole encoder is built (as it is in the processes the estimate forks)."""
        method = _method(model)
        distinct = list(dict.fromkeys(texts))
        counted = None
        if method.encoding == FALLBACK:
            counted = [_text_counter(method)(text) for text in distinct]
        elif method.encoding not in _ENCODERS and sum(map(len, distinct)) <= UNITS_UP_TO_CHARS:
            counted = _count_units(method.encoding, distinct)
        if counted is None:
            counted = _count_parallel(_load(method.encoding).encode_ordinary, distinct)
        counts = dict(zip(distinct, counted))
        return [counts[text] for text in texts]

    def token_starts(self, model: str, text: str) -> list[int]:
        """Where each of the text's tokens starts (a character offset), so that a text can be cut into
        windows of whole tokens, counted as ``count_text`` counts (every fourth character under the
        characters / 4 fallback)."""
        method = _method(model)
        if method.encoding == FALLBACK:
            return list(range(0, len(text), CHARS_PER_TOKEN))
        encoder = _load(method.encoding)
        return encoder.decode_with_offsets(encoder.encode_ordinary(text))[1]

    def count_messages_many(self, model: str, requests: list[list[dict[str, str]]]) -> list[int]:
        """``count_messages`` of each request, with all their texts counted by one ``count_many``
        (eval cases of one prompt share most of their text: the system message is counted once)."""
        texts = [value for messages in requests for message in messages for value in message.values()]
        counts = dict(zip(texts, self.count_many(model, texts)))
        return [_framed(messages, counts.__getitem__) for messages in requests]


def _framed(messages: list[dict[str, str]], count: Callable[[str], int]) -> int:
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE + sum(count(value) for value in message.values())
        if "name" in message:
            total += TOKENS_PER_NAME
    return total


def base_model(model: str) -> str:
    """The model's own name: without the provider route (``openai/``, ``openrouter/openai/``)
    and without fine-tune decorations (``ft:BASE:org:name:id`` -> ``BASE``)."""
    name = model.rsplit("/", 1)[-1]
    if name.startswith("ft:"):
        name = name.split(":")[1]
    return name


@cache
def _method(model: str) -> TokenMethod:
    try:
        from tiktoken.model import encoding_name_for_model
    except ImportError:
        return TokenMethod(FALLBACK, False, "estimated as characters / 4: tiktoken is not installed")
    base = base_model(model)
    try:
        known: str | None = encoding_name_for_model(base)
    except KeyError:
        known = None
    # litellm's rule comes first: anything named gpt-4o uses o200k_base.
    encoding = "o200k_base" if "gpt-4o" in base else known or APPROXIMATION
    missing = _missing(encoding)
    if missing:
        return TokenMethod(FALLBACK, False, f"estimated as characters / 4: {missing}")
    if known:
        return TokenMethod(encoding, True, f"tiktoken {encoding} (exact for {base})")
    return TokenMethod(encoding, False, f"approximated with {encoding}: no offline tokenizer for {model}")


@cache
def _missing(encoding: str) -> str | None:
    """Why ``encoding`` cannot be loaded without a download, or None when promptops' copy or its source
    file is in place and intact."""
    if encoding not in _SOURCES:
        return f"promptops knows no offline copy of {encoding}"
    folder = _tiktoken_cache_dir()
    if _vocabulary(encoding) is not None:
        return None
    return _source_problem(encoding, folder)


def _source_problem(encoding: str, folder: str) -> str | None:
    """Why tiktoken would download ``encoding`` rather than read it from ``folder``, or None."""
    filename, sha256 = _SOURCES[encoding]
    if not folder:
        return f"TIKTOKEN_CACHE_DIR is empty, which makes tiktoken download {encoding}"
    path = Path(folder, hashlib.sha1((_DOWNLOADS + filename).encode()).hexdigest())
    try:
        data = path.read_bytes()
    except OSError:
        return f"no copy of {encoding} in {folder}"
    if hashlib.sha256(data).hexdigest() != sha256:
        return f"the copy of {encoding} in {folder} is damaged"
    return None


def _tiktoken_cache_dir() -> str:
    """The folder tiktoken will read (resolved as tiktoken.load.read_file_cached does), after
    pointing it at litellm's copies unless the user chose one."""
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        bundled = _bundled_tokenizers()
        if bundled:
            os.environ["TIKTOKEN_CACHE_DIR"] = bundled
    for variable in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if variable in os.environ:
            return os.environ[variable]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _bundled_tokenizers() -> str | None:
    """litellm's folder of tiktoken files, found without importing litellm."""
    spec = importlib.util.find_spec("litellm")
    for root in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(root, "litellm_core_utils", "tokenizers")
        if folder.is_dir():
            return str(folder)
    return None


_ENCODERS: dict[str, Encoding] = {}  # whole encoders built in this process
_UNIT_COUNTS: dict[str, dict[str, int]] = {}  # encoding -> unit -> tokens, counted in this process
_PARTIAL_ENCODERS = [0]  # encoders built from a part of a vocabulary in this process


def _load(encoding: str) -> Encoding:
    """The whole encoder, built once a process. Only called for encodings _missing() cleared."""
    if encoding not in _ENCODERS:
        import tiktoken

        _ENCODERS[encoding] = tiktoken.Encoding(**_arguments(encoding))
    return _ENCODERS[encoding]


def _arguments(encoding: str) -> dict[str, Any]:
    """``tiktoken.Encoding``'s arguments, from promptops' copy, else from the source file."""
    vocabulary = _vocabulary(encoding)
    if vocabulary is not None:
        try:
            return vocabulary.arguments()
        except sqlite3.Error as exc:  # damaged since it was opened: only the source can say what it held
            vocabulary.discard()
            problem = _source_problem(encoding, _tiktoken_cache_dir())
            if problem:
                raise RuntimeError(f"promptops' copy of {encoding} in {vocabulary.path} cannot be read ({exc}) "
                                   f"and {problem}; delete the copy") from None
    return _source_arguments(encoding)


@cache
def _vocabulary(encoding: str) -> Vocabulary | None:
    """promptops' copy of ``encoding``, built from the source file the first time; None when there is
    neither a copy nor an intact source, or the cache folder cannot be written."""
    import tiktoken

    from promptops.estimate.vocabulary import FORMAT, Vocabulary
    from promptops.schemacache import cache_dir

    source = _SOURCES[encoding][1][:16]
    path = cache_dir() / f"tiktoken-{encoding}-{source}-{tiktoken.__version__}-v{FORMAT}.sqlite"
    found = Vocabulary.open(path)
    if (found is None and _source_problem(encoding, _tiktoken_cache_dir()) is None
            and Vocabulary.build(path, _source_arguments(encoding))):
        found = Vocabulary.open(path)
    return found


@cache
def _source_arguments(encoding: str) -> dict[str, Any]:
    """What tiktoken.get_encoding builds the encoding from (reading the source file _missing() cleared)."""
    from tiktoken_ext.openai_public import ENCODING_CONSTRUCTORS

    return ENCODING_CONSTRUCTORS[encoding]()  # type: ignore[no-any-return]


def _count_units(encoding: str, texts: list[str]) -> list[int] | None:
    """Token counts of ``texts``, each the sum of its units' counts: those counted before (in this run or
    an earlier one), and the new ones, counted by an encoder of only the tokens that occur in them (the
    whole encoder once that is the quicker way) and remembered. None when the units cannot be used:
    there is no copy of the vocabulary, its pattern is not one the unit reasoning holds for, or a text
    holds a lone surrogate."""
    vocabulary = _vocabulary(encoding)
    if vocabulary is None or hashlib.sha256(vocabulary.header["pat_str"].encode()).hexdigest() not in _UNIT_PATTERNS:
        return None
    known = _UNIT_COUNTS.setdefault(encoding, {})
    units_of = [_UNIT_BOUNDARY.split(text) for text in texts]
    try:
        known.update(vocabulary.counts({unit for units in units_of for unit in units if unit not in known}))
        new = {unit.encode("utf-8") for units in units_of for unit in units if unit not in known}
        if new:
            counted = _count_new_units(encoding, vocabulary, new)
            known.update(counted)
            vocabulary.remember(counted)
    except UnicodeEncodeError:  # a lone surrogate: tiktoken's own encoder knows what to do with it
        return None
    except sqlite3.Error:  # the copy became unreadable: the whole encoder, from the source
        return None
    return [sum(known[unit] for unit in units) for units in units_of]


def _count_new_units(encoding: str, vocabulary: Vocabulary, units: set[bytes]) -> dict[str, int]:
    lookups = sum(len(unit) * min(len(unit), vocabulary.longest) for unit in units)
    if lookups > UNIT_LOOKUPS_LIMIT or _PARTIAL_ENCODERS[0] >= UNIT_ENCODERS_LIMIT:
        encode = _load(encoding).encode_ordinary
        return {text: len(encode(text)) for text in (unit.decode("utf-8") for unit in units)}
    return _count_with_subset(vocabulary, units)


def _count_with_subset(vocabulary: Vocabulary, units: set[bytes]) -> dict[str, int]:
    """Each unit's tokens, by a tiktoken encoder of the vocabulary's tokens that are parts of the units."""
    import tiktoken

    longest = vocabulary.longest
    parts = {unit[start:end] for unit in units for start in range(len(unit))
             for end in range(start + 1, min(len(unit), start + longest) + 1)}
    found = vocabulary.ranks(parts)
    counts = {unit.decode("utf-8"): 0 for unit in units}
    if found:
        _PARTIAL_ENCODERS[0] += 1
        encoder = tiktoken.Encoding(f"{vocabulary.header['name']} (part)", pat_str=vocabulary.header["pat_str"],
                                    mergeable_ranks=found, special_tokens={})
        counts = {text: len(encoder.encode_ordinary(text)) for text in counts}
    return counts


def _text_counter(method: TokenMethod) -> Callable[[str], int]:
    if method.encoding == FALLBACK:
        return lambda text: math.ceil(len(text) / CHARS_PER_TOKEN)
    # encode_ordinary: special-token text in a prompt ("<|endoftext|>") is plain text to the API, not an error.
    encode = _load(method.encoding).encode_ordinary
    return lambda text: len(encode(text))


PARALLEL_FROM_TEXTS = 64  # fewer texts are counted in this thread: starting threads would cost more


def _count_parallel(encode: Callable[[str], list[int]], texts: list[str]) -> list[int]:
    """Token counts of ``texts``, one interleaved share per core (tiktoken releases the GIL while it encodes).

    Not tiktoken's encode_ordinary_batch: that keeps every token list (36 bytes a token) and
    submits one task per text; here each thread keeps only counts.
    """
    workers = min(cores(), len(texts)) if len(texts) >= PARALLEL_FROM_TEXTS else 1
    if workers < 2:
        return [len(encode(text)) for text in texts]
    from concurrent.futures import ThreadPoolExecutor  # not on a commit hook's path

    shares = [texts[i::workers] for i in range(workers)]
    counts: list[int] = [0] * len(texts)
    with ThreadPoolExecutor(workers, thread_name_prefix="promptops-tokens") as pool:
        for i, share in enumerate(pool.map(lambda part: [len(encode(text)) for text in part], shares)):
            counts[i::workers] = share
    return counts


def cores() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1
