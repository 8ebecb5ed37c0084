"""The report templates' Jinja environments (templates/*.j2, shipped in the wheel), made by the one
factory, ``resources.template_environment``.

Markdown templates render unescaped (cells arrive escaped by ``safety.inline`` and
``safety.block``); HTML templates autoescape. Both are strict (an undefined name is
an error, not an empty string) and keep layout predictable (trim_blocks,
lstrip_blocks, the final newline kept). Users' prompt templates do not render
here: they are untrusted and render in templating.BoundedSandbox.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from promptops import resources
from promptops.report.formatting import percent
from promptops.report.safety import inline

if TYPE_CHECKING:
    from jinja2 import Environment


def render_template(name: str, *, autoescape: bool = False, **values: Any) -> str:
    return environment(autoescape).get_template(name).render(**values)


@functools.lru_cache(maxsize=2)
def environment(autoescape: bool = False) -> Environment:
    """One environment per escaping mode, made once: a comment may render several times to fit a limit."""
    filters: dict[str, Callable[..., Any]] = {
        "inline": inline,  # the comment's one escaper: see report.safety
        "percent": percent,
        "tojson_sorted": lambda value: json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2),
    }
    return resources.template_environment(autoescape=autoescape, filters=filters)
