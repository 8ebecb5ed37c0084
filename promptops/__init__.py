"""promptops: LLM prompts and retrieval configs as code."""

__version__ = "0.1.0"
