"""Files that ship with promptops: JSON Schemas, and the report and judge templates.

In a wheel they are the packages ``promptops.schemas`` and ``promptops.templates``
(mapped from the repository's top-level folders); in a source checkout run
without installing, they are those folders themselves.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Environment

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    installed = _PACKAGE_DIR / name
    if installed.is_dir():
        return installed
    checkout = _PACKAGE_DIR.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"promptops is missing its {name}/ folder (looked in {installed} and {checkout})")


@functools.cache
def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a file kind: prompt, retrieval, eval or config.

    ``eval-case`` is one case of an eval suite, as a dataset row holds it.
    """
    if kind == "eval-case":
        suite = schema("eval")
        return {"$schema": suite["$schema"], "$defs": suite["$defs"], "$ref": "#/$defs/case"}
    with open(data_dir("schemas") / f"{kind}.schema.json", encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


def template_environment(folder: str = "", *, autoescape: bool = False, keep_trailing_newline: bool = True,
                         filters: dict[str, Callable[..., Any]] | None = None) -> Environment:
    """The one way to make a Jinja environment for promptops' own templates (``templates/``, or a
    sub-folder of it): strict (an undefined name is an error, not an empty string) and with a
    predictable layout (trim_blocks, lstrip_blocks). Users' prompt templates never render here: they
    are untrusted and render in ``templating.BoundedSandbox``."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    made = Environment(loader=FileSystemLoader(str(data_dir("templates") / folder)), undefined=StrictUndefined,
                       autoescape=autoescape, keep_trailing_newline=keep_trailing_newline, trim_blocks=True,
                       lstrip_blocks=True)
    made.filters.update(filters or {})
    return made
