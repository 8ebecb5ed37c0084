"""promptops: LLM prompts and retrieval configs as code."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `promptops.load` on first use only: `import promptops` stays as light as the lint path needs.
    if name in ("load", "LoadError"):
        from promptops.release import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'promptops' has no attribute {name!r}")
