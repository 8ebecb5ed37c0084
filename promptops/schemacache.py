"""Compiled validators for our schemas, cached on disk between runs.

fastjsonschema turns a schema into Python code; generating it costs tens of
milliseconds a schema, more than a whole commit-hook run should, so the code
is written once to the user's cache folder and imported from there (Python
then also keeps its bytecode). Our schemas declare draft 2020-12 but use only
keywords that mean the same in draft 7, which fastjsonschema implements.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptops import resources


def cache_dir() -> Path:
    configured = os.environ.get("PROMPTOPS_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "promptops"


def fast_validator(kind: str) -> Callable[[Any], Any]:
    import fastjsonschema

    schema = dict(resources.schema(kind))
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema.pop("$id", None)  # without an $id the generated entry point is called `validate`
    digest = hashlib.sha256((json.dumps(schema, sort_keys=True) + fastjsonschema.VERSION).encode()).hexdigest()[:16]
    path = cache_dir() / f"validate_{kind}_{digest}.py"
    if not _is_file(path) and not write_atomically(path, fastjsonschema.compile_to_code(schema).encode()):
        return fastjsonschema.compile(schema)  # a cache folder we cannot write: lint needs none
    spec = importlib.util.spec_from_file_location(f"promptops_validate_{kind}_{digest}", path)
    if spec is None or spec.loader is None:
        return fastjsonschema.compile(schema)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception:  # a damaged cache file: regenerate in memory rather than fail
        return fastjsonschema.compile(schema)
    validate: Callable[[Any], Any] = module.validate
    return validate


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a folder we may not look into (EACCES), a name the file system refuses
        return False


def write_atomically(path: Path, data: bytes) -> bool:
    """Write a cache file atomically, so that concurrent hooks never read a half-written one; False when the
    cache folder cannot be written (nothing needs it to be)."""
    import tempfile  # only on a cold cache

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, suffix=".tmp", delete=False) as out:
            out.write(data)
        os.replace(out.name, path)
        return True
    except OSError:
        return False
