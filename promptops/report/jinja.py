"""The one Jinja environment factory for report templates (templates/*.j2, shipped in the wheel).

Markdown templates render unescaped (cells arrive escaped by ``safety.inline`` and
``safety.block``); HTML templates autoescape. Both are strict (an undefined name is
an error, not an empty string) and keep layout predictable (trim_blocks,
lstrip_blocks, the final newline kept). Users' prompt templates do not render
here: they are untrusted and render in templating.BoundedSandbox.
"""

from __future__ import annotations

import functools
import json
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
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    made = Environment(loader=FileSystemLoader(str(resources.data_dir("templates"))), undefined=StrictUndefined,
                       autoescape=autoescape, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    made.filters["inline"] = inline  # the comment's one escaper: see report.safety
    made.filters["percent"] = percent
    made.filters["tojson_sorted"] = lambda value: json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2)
    return made
