"""Offline token counting: encodings chosen as litellm chooses them, OpenAI's message framing, and a
fallback that never lets tiktoken reach for the network."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from promptops.estimate import tokens
from promptops.estimate.tokens import FALLBACK, TokenCounter, TokenMethod, base_model

if TYPE_CHECKING:
    from tiktoken import Encoding

COUNTER = TokenCounter()
# File names in a tiktoken cache: the sha1 of the URL tiktoken downloads the encoding from.
O200K_FILE = "fb374d419588a4632f3f557e76b4b70aebbca790"
P50K_FILE = "ec7223a39ce59f226a68acc30dc1af2788490e15"  # the smallest encoding: quick to load in a subprocess
DAVINCI = "text-completion-openai/text-davinci-003"  # uses p50k_base


def _encoding(name: str) -> Encoding:
    """tiktoken's own encoder, read from litellm's copies as any run points it at them. Set here, not by a
    first count: that is memoised per process, and a test before this one may have restored the environment."""
    import tiktoken

    folder = tokens._bundled_tokenizers()
    assert folder is not None
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = folder
    try:
        return tiktoken.get_encoding(name)
    finally:
        if previous is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous


def _run(code: str, *args: str, **env: str) -> Any:
    """Runs ``code`` in a fresh interpreter (no encoding loaded, no cache filled: promptops' own cache is an
    empty folder unless ``env`` names one) and returns the JSON it prints."""
    clean = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")}
    with tempfile.TemporaryDirectory() as empty:
        environment = {**clean, "PROMPTOPS_CACHE_DIR": empty, **env}
        done = subprocess.run([sys.executable, "-c", code, *args], env=environment, capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize(("model", "text", "expected"), [
    ("openai/gpt-4o", "hello world", 2),
    ("openai/gpt-4o-mini", "", 0),
    ("gpt-4", "hello world", 2),
])
def test_known_counts(model: str, text: str, expected: int) -> None:
    assert COUNTER.count_text(model, text) == expected


@pytest.mark.parametrize(("model", "encoding"), [
    ("openai/gpt-4o-mini", "o200k_base"),
    ("openai/gpt-4.1", "o200k_base"),
    ("gpt-3.5-turbo", "cl100k_base"),
    ("anthropic/claude-sonnet-4-5", "cl100k_base"),
    (DAVINCI, "p50k_base"),
])
def test_counts_agree_with_tiktoken(model: str, encoding: str) -> None:
    texts = ["Answer from the passages only.\n\n[1] Refunds within 30 days.", "ünïcødé 日本語 🙂 tabs\tand  spaces",
             "code: def f(x):\n    return x ** 2  # square", "<|endoftext|> is plain text in a prompt"]
    enc = _encoding(encoding)
    assert [COUNTER.count_text(model, t) for t in texts] == [len(enc.encode_ordinary(t)) for t in texts]


def test_message_framing() -> None:
    model = "openai/gpt-4o-mini"
    system = {"role": "system", "content": "You answer questions about Acme's product."}
    user = {"role": "user", "content": "How long is the refund window?", "name": "alice"}
    values = [v for message in (system, user) for v in message.values()]
    content = sum(COUNTER.count_text(model, v) for v in values)
    # 3 per message, 1 for the name, 3 for the reply priming; role and name are counted as text too.
    assert COUNTER.count_messages(model, [system, user]) == content + 2 * 3 + 1 + 3
    assert COUNTER.count_messages(model, [system]) == sum(COUNTER.count_text(model, v) for v in system.values()) + 6
    assert COUNTER.count_messages(model, []) == 3


def test_message_framing_matches_openai_recipe() -> None:
    # Worked by hand with o200k_base: "system"=1, "user"=1, "alice"=1, contents 2 and 3 tokens.
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there!", "name": "alice"}]
    assert [COUNTER.count_text("gpt-4o", m["content"]) for m in messages] == [3, 3]
    assert COUNTER.count_messages("gpt-4o", messages) == (3 + 1 + 3) + (3 + 1 + 3 + 1 + 1) + 3


@pytest.mark.parametrize(("model", "method"), [
    ("openai/gpt-4o-mini", TokenMethod("o200k_base", True, "tiktoken o200k_base (exact for gpt-4o-mini)")),
    ("gpt-4o", TokenMethod("o200k_base", True, "tiktoken o200k_base (exact for gpt-4o)")),
    ("openai/gpt-4.1-nano", TokenMethod("o200k_base", True, "tiktoken o200k_base (exact for gpt-4.1-nano)")),
    ("openai/o3", TokenMethod("o200k_base", True, "tiktoken o200k_base (exact for o3)")),
    ("azure/gpt-35-turbo", TokenMethod("cl100k_base", True, "tiktoken cl100k_base (exact for gpt-35-turbo)")),
    ("openrouter/openai/gpt-4o", TokenMethod("o200k_base", True, "tiktoken o200k_base (exact for gpt-4o)")),
    ("openai/ft:gpt-4o-mini-2024-07-18:acme:x:abc",
     TokenMethod("o200k_base", True, "tiktoken o200k_base (exact for gpt-4o-mini-2024-07-18)")),
    ("anthropic/claude-sonnet-4-5", TokenMethod(
        "cl100k_base", False, "approximated with cl100k_base: no offline tokenizer for anthropic/claude-sonnet-4-5")),
    ("gemini/gemini-2.5-flash", TokenMethod(
        "cl100k_base", False, "approximated with cl100k_base: no offline tokenizer for gemini/gemini-2.5-flash")),
    ("ollama/llama3", TokenMethod(
        "cl100k_base", False, "approximated with cl100k_base: no offline tokenizer for ollama/llama3")),
    ("openai/my-model", TokenMethod(
        "cl100k_base", False, "approximated with cl100k_base: no offline tokenizer for openai/my-model")),
    # litellm's rule: a name with gpt-4o in it uses o200k_base, though tiktoken does not know the model.
    ("openai/acme-gpt-4o-distill", TokenMethod(
        "o200k_base", False, "approximated with o200k_base: no offline tokenizer for openai/acme-gpt-4o-distill")),
])
def test_method_selection(model: str, method: TokenMethod) -> None:
    assert COUNTER.method(model) == method


def test_encoding_litellm_does_not_ship_falls_back() -> None:
    # davinci uses r50k_base, which litellm does not ship: no download, an estimate that says why.
    method = COUNTER.method("openai/davinci")
    assert (method.encoding, method.exact) == (FALLBACK, False)
    assert method.note.startswith("estimated as characters / 4: no copy of r50k_base in ")
    assert COUNTER.count_text("openai/davinci", "x" * 9) == 3


@pytest.mark.parametrize(("model", "base"), [
    ("openai/ft:gpt-4o-mini-2024-07-18:acme:x:abc", "gpt-4o-mini-2024-07-18"),
    ("ft:gpt-3.5-turbo-0125:acme::9abc", "gpt-3.5-turbo-0125"),
    ("openai/ft:davinci-002:acme:custom:id", "davinci-002"),
    ("openai/gpt-4o", "gpt-4o"),
    ("openrouter/openai/gpt-4o", "gpt-4o"),
    ("gpt-4o-mini", "gpt-4o-mini"),
])
def test_fine_tune_and_provider_names(model: str, base: str) -> None:
    assert base_model(model) == base


def test_fine_tunes_count_like_their_base() -> None:
    text = "A fine-tuned model keeps its base model's tokenizer."
    assert COUNTER.count_text("openai/ft:gpt-4o-mini-2024-07-18:acme:x:abc", text) == COUNTER.count_text(
        "gpt-4o-mini", text)
    assert COUNTER.method("ft:gpt-3.5-turbo-0125:acme::9abc").encoding == "cl100k_base"


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "openai/davinci"])
def test_count_many_equals_count_text(model: str) -> None:
    texts = [("word " * n) + "ünïcødé " * (n % 7) for n in range(0, 300, 13)] + ["", "hello world"]
    assert COUNTER.count_many(model, texts) == [COUNTER.count_text(model, t) for t in texts]
    assert COUNTER.count_many(model, []) == []
    assert COUNTER.count_many(model, ["hello world"]) == [COUNTER.count_text(model, "hello world")]


def test_count_many_counts_repeated_texts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[str] = []
    real = tokens._count_parallel

    def recording(encode, texts: list[str]) -> list[int]:
        encoded.extend(texts)
        return real(encode, texts)

    monkeypatch.setattr(tokens, "_count_parallel", recording)
    monkeypatch.setattr(tokens, "UNITS_UP_TO_CHARS", 0)  # counted whole, as a large batch is
    assert COUNTER.count_many("gpt-4o", ["a b", "c", "a b", "a b"]) == [2, 1, 2, 2]
    assert encoded == ["a b", "c"]


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "openai/davinci"])
def test_count_messages_many_equals_count_messages(model: str) -> None:
    system = {"role": "system", "content": "Answer from the passages only."}
    requests = [[system, {"role": "user", "content": f"Question {i}: " + "why " * i}] for i in range(12)]
    requests += [[], [system, {"role": "user", "content": "hi", "name": "alice"}]]
    assert COUNTER.count_messages_many(model, requests) == [COUNTER.count_messages(model, r) for r in requests]
    assert COUNTER.count_messages_many(model, []) == []


def test_import_loads_nothing() -> None:
    result = _run("import json, os, sys\n"
                  "import promptops.estimate.tokens\n"
                  "print(json.dumps({'tiktoken': 'tiktoken' in sys.modules, 'litellm': 'litellm' in sys.modules,"
                  " 'env': 'TIKTOKEN_CACHE_DIR' in os.environ}))")
    assert result == {"tiktoken": False, "litellm": False, "env": False}


def test_counting_never_imports_litellm() -> None:
    result = _run("import json, os, sys\n"
                  "from promptops.estimate.tokens import TokenCounter\n"
                  f"n = TokenCounter().count_text('{DAVINCI}', 'hello world')\n"
                  "print(json.dumps({'n': n, 'litellm': 'litellm' in sys.modules,"
                  " 'env': os.environ['TIKTOKEN_CACHE_DIR'].endswith('tokenizers')}))")
    assert result == {"n": 2, "litellm": False, "env": True}


# Any attempt to reach the network, by socket or by name lookup, is recorded and refused.
_NO_NETWORK = """
import json, socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args)[:80])
    raise OSError("network refused by the test")
socket.getaddrinfo = refuse
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
from promptops.estimate.tokens import TokenCounter
c = TokenCounter()
out = {}
for model in sys.argv[1:]:
    m = c.method(model)
    out[model] = {"encoding": m.encoding, "exact": m.exact, "note": m.note, "text": c.count_text(model, "x" * 10),
                  "messages": c.count_messages(model, [{"role": "user", "content": "x" * 10}]),
                  "many": c.count_many(model, ["x" * 10, "y" * 3]),
                  "requests": c.count_messages_many(model, [[{"role": "user", "content": "x" * 10}]])}
out["attempts"] = attempts
print(json.dumps(out))
"""


def test_empty_cache_dir_falls_back_without_network(tmp_path: Path) -> None:
    models = ["openai/gpt-4o", "anthropic/claude-sonnet-4-5"]
    result = _run(_NO_NETWORK, *models, TIKTOKEN_CACHE_DIR=str(tmp_path))
    assert result.pop("attempts") == []
    for model in models:
        encoding = "o200k_base" if "gpt-4o" in model else "cl100k_base"
        assert result[model] == {
            "encoding": FALLBACK, "exact": False,
            "note": f"estimated as characters / 4: no copy of {encoding} in {tmp_path}",
            # "user" is 4 characters: 1 token
            "text": 3, "messages": 3 + 1 + 3 + 3, "many": [3, 1], "requests": [3 + 1 + 3 + 3]}
    assert list(tmp_path.iterdir()) == []  # and tiktoken wrote nothing there


def test_user_cache_dir_is_respected(tmp_path: Path) -> None:
    # The user's folder holds only p50k_base: davinci-003 is exact from it, cl100k_base is not taken from litellm.
    bundled = tokens._bundled_tokenizers()
    assert bundled is not None
    shutil.copy(Path(bundled, P50K_FILE), tmp_path / P50K_FILE)
    result = _run(_NO_NETWORK, DAVINCI, "ollama/llama3", TIKTOKEN_CACHE_DIR=str(tmp_path))
    assert result["attempts"] == []
    assert (result[DAVINCI]["encoding"], result[DAVINCI]["exact"]) == ("p50k_base", True)
    assert result[DAVINCI]["text"] == len(_encoding("p50k_base").encode_ordinary("x" * 10))
    assert result["ollama/llama3"]["encoding"] == FALLBACK


def test_damaged_file_is_neither_loaded_nor_deleted(tmp_path: Path) -> None:
    # tiktoken would delete a file that fails its hash and download it again.
    (tmp_path / O200K_FILE).write_bytes(b"not an encoding\n")
    result = _run(_NO_NETWORK, "openai/gpt-4o", TIKTOKEN_CACHE_DIR=str(tmp_path))
    assert result["attempts"] == []
    assert result["openai/gpt-4o"]["note"] == \
        f"estimated as characters / 4: the copy of o200k_base in {tmp_path} is damaged"
    assert (tmp_path / O200K_FILE).read_bytes() == b"not an encoding\n"


def test_empty_cache_variable_falls_back() -> None:
    # TIKTOKEN_CACHE_DIR="" turns tiktoken's cache off: every load would be a download.
    result = _run(_NO_NETWORK, "openai/gpt-4o", TIKTOKEN_CACHE_DIR="")
    assert result["attempts"] == []
    assert result["openai/gpt-4o"]["note"] == (
        "estimated as characters / 4: TIKTOKEN_CACHE_DIR is empty, which makes tiktoken download o200k_base")


def test_without_tiktoken() -> None:
    result = _run("import json, sys\n"
                  "sys.modules['tiktoken'] = None\n"
                  "from promptops.estimate.tokens import TokenCounter\n"
                  "c = TokenCounter()\n"
                  "m = c.method('openai/gpt-4o')\n"
                  "print(json.dumps([m.encoding, m.exact, m.note, c.count_text('openai/gpt-4o', 'x' * 5)]))")
    assert result == [FALLBACK, False, "estimated as characters / 4: tiktoken is not installed", math.ceil(5 / 4)]


# -- promptops' cache of the encodings ------------------------------------------------------------

CORPUS = ["hello world", "", "  leading and trailing  ", "Ünïcödé — “quotes” and emoji 🙂👍🏽", "<|endoftext|> is text",
          "line one\nline two\r\n\n\ttabbed", "1234567890 3.14159 -42", "CamelCaseWords and snake_case_words",
          "https://example.com/a/b?c=d&e=f", "x" * 3000, "日本語のテキストと中文文本", "a" + " " * 40 + "b"]
_COUNT = """
import json, sys
from promptops.estimate.tokens import TokenCounter
corpus = json.loads(sys.argv[1])
c = TokenCounter()
print(json.dumps({model: [c.method(model).encoding, [c.count_text(model, t) for t in corpus]]
                  for model in sys.argv[2:]}))
"""
MODELS = {"openai/gpt-4o": "o200k_base", "gpt-4": "cl100k_base", DAVINCI: "p50k_base"}


def _reference() -> dict[str, list[Any]]:
    return {model: [name, [len(_encoding(name).encode_ordinary(t)) for t in CORPUS]] for model, name in MODELS.items()}


def test_the_cached_encodings_count_exactly_as_tiktoken(tmp_path: Path) -> None:
    cold = _run(_COUNT, json.dumps(CORPUS), *MODELS, PROMPTOPS_CACHE_DIR=str(tmp_path))
    files = sorted(path.name for path in tmp_path.iterdir())
    assert [name.split("-")[1] for name in files] == ["cl100k_base", "o200k_base", "p50k_base"], files
    warm = _run(_COUNT, json.dumps(CORPUS), *MODELS, PROMPTOPS_CACHE_DIR=str(tmp_path))
    assert cold == warm == _reference()


def test_a_warm_cache_needs_no_source_file(tmp_path: Path) -> None:
    cache, empty = tmp_path / "cache", tmp_path / "empty"
    empty.mkdir()
    _run(_COUNT, json.dumps(CORPUS), "openai/gpt-4o", PROMPTOPS_CACHE_DIR=str(cache))
    warm = _run(_COUNT, json.dumps(CORPUS), "openai/gpt-4o", PROMPTOPS_CACHE_DIR=str(cache),
                TIKTOKEN_CACHE_DIR=str(empty))
    assert warm == {"openai/gpt-4o": _reference()["openai/gpt-4o"]}
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_damaged_cache_file_is_rebuilt(tmp_path: Path, damage: str) -> None:
    _run(_COUNT, json.dumps(CORPUS), "openai/gpt-4o", PROMPTOPS_CACHE_DIR=str(tmp_path))
    [cached] = tmp_path.iterdir()
    intact = cached.read_bytes()
    cached.write_bytes({"garbage": b"garbage" * 100, "truncated": intact[: len(intact) // 2], "empty": b""}[damage])
    result = _run(_COUNT, json.dumps(CORPUS), "openai/gpt-4o", PROMPTOPS_CACHE_DIR=str(tmp_path))
    assert result == {"openai/gpt-4o": _reference()["openai/gpt-4o"]}
    assert sorted(path.name for path in tmp_path.iterdir()) == [cached.name]  # rebuilt in place, nothing left over
    with sqlite3.connect(cached) as connection:
        assert connection.execute("SELECT count(*) FROM vocab").fetchone()[0] == 199998


def test_a_cache_folder_that_cannot_be_written_changes_nothing(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    result = _run(_COUNT, json.dumps(CORPUS), *MODELS, PROMPTOPS_CACHE_DIR=str(blocked / "cache"))
    assert result == _reference()


# -- small batches: an encoder of only the tokens their units use -----------------------------------

_UNITS = """
import json, random, sys
from promptops.estimate import tokens
tokens.UNIT_LOOKUPS_LIMIT = 10 ** 9  # every batch below by the unit path, however awkward
tokens.UNIT_ENCODERS_LIMIT = 10 ** 6
corpus = json.loads(open(sys.argv[1], encoding="utf-8").read())
c = tokens.TokenCounter()
out = {}
for model in sys.argv[2:]:
    counts = c.count_many(model, corpus)
    out[model] = [c.method(model).encoding, counts, sorted(tokens._ENCODERS)]
print(json.dumps(out))
"""


def _awkward_corpus() -> list[str]:
    """Random strings over letters, digits, punctuation, every kind of white space, marks, CJK and emoji,
    and the shapes the unit boundaries are about: punctuation before line breaks, runs of spaces."""
    import random

    pieces = list("abcXYZ019 \t\n\r.,;:!?'\"/\\-_()<>|@#$%*+=~`") + [
        "é", "ß", "—", "“", "🙂", "👍🏽", "日本語", "中文", "\u00a0", "\u2003", "\u3000", "\x1c", "\x85", "\u200b",
        "\u0301", "'s", "'ll", " the", " The", "\n\n", "  ", "1234", "<|endoftext|>", "\r\n", ".\n/\n", "!!\n"]
    rnd = random.Random(12)
    corpus = ["".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 60))) for _ in range(1500)]
    return corpus + CORPUS + ["foo.\n/\n/bar", "!!\n\n\n  x", "   \n\n   y  ", "a \u00a0 \u00a0 \nb", "x\u3000\u3000y"]


def test_the_unit_path_counts_exactly_as_the_whole_encoder(tmp_path: Path) -> None:
    corpus = _awkward_corpus()
    (tmp_path / "corpus.json").write_text(json.dumps(corpus), encoding="utf-8")
    result = _run(_UNITS, str(tmp_path / "corpus.json"), *MODELS)
    for model, name in MODELS.items():
        encoding, counts, whole_encoders = result[model]
        assert encoding == name and whole_encoders == []  # the unit path did all of it
        encoder = _encoding(name)
        assert counts == [len(encoder.encode_ordinary(text)) for text in corpus], model


def test_large_batches_and_lone_surrogates_take_the_whole_encoder(tmp_path: Path) -> None:
    code = """
import json
from promptops.estimate import tokens
c = tokens.TokenCounter()
small = c.count_many("openai/gpt-4o", ["hello world", "hello there"])
after_small = sorted(tokens._ENCODERS)
odd = c.count_many("openai/gpt-4o", ["a\\ud800b"])
print(json.dumps([small, after_small, odd, sorted(tokens._ENCODERS)]))
"""
    small, after_small, odd, after_odd = _run(code)
    assert small == [2, 2] and after_small == [] and after_odd == ["o200k_base"]
    assert odd == [len(_encoding("o200k_base").encode_ordinary("a\ud800b"))]
    corpus = [" ".join(f"w{i}x{j}" for j in range(20)) for i in range(2000)]  # 40,000 units: past UNIT_LOOKUPS_LIMIT
    (tmp_path / "corpus.json").write_text(json.dumps(corpus), encoding="utf-8")
    as_shipped = "\n".join(line for line in _UNITS.splitlines() if not line.startswith("tokens.UNIT_"))
    big = _run(as_shipped, str(tmp_path / "corpus.json"), "openai/gpt-4o")
    encoding, counts, whole_encoders = big["openai/gpt-4o"]
    assert whole_encoders == ["o200k_base"]  # its new units counted by the whole encoder
    assert counts == [len(_encoding("o200k_base").encode_ordinary(text)) for text in corpus]
    whole_texts = _run(as_shipped.replace("c = tokens.TokenCounter()", "tokens.UNITS_UP_TO_CHARS = 0\n"
                                          "c = tokens.TokenCounter()"), str(tmp_path / "corpus.json"), "openai/gpt-4o")
    assert whole_texts == big


def test_token_starts_cut_a_text_at_whole_tokens() -> None:
    """Retrieval chunking cuts at these offsets: one a token, in order, the pieces joining back into the text."""
    counter = TokenCounter()
    text = "Refunds are accepted within 30 days. Café ☕ works."
    starts = counter.token_starts("openai/text-embedding-3-small", text)
    assert len(starts) == counter.count_text("openai/text-embedding-3-small", text) == 14
    assert starts[:4] == [0, 3, 7, 11] and starts == sorted(starts)  # "Ref", "unds", " are", " accepted"
    assert "".join(text[a:b] for a, b in zip(starts, [*starts[1:], len(text)])) == text
