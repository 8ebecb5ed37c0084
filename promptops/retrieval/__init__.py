"""Retrieval: a retrieval config's corpus, chunked, embedded, indexed, searched and reranked.

Modules, in pipeline order: ``settings`` (the config's sections as typed
objects), ``corpus`` (the documents a config names), ``chunking``,
``embedding`` (litellm's async embedding API, batched, cached), ``index`` (an
exact search over a memory-mapped matrix), ``rerank`` and ``pipeline`` (the
stages put together). ``settings`` and ``corpus`` import neither litellm nor
numpy: lint uses them on the commit path. This package imports nothing itself.
"""
