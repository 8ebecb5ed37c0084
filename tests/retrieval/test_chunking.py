"""Chunking per a retrieval config: sizes in the embedding model's tokens (the cost estimate's tokenizer),
overlap, and the four strategies."""

from __future__ import annotations

import pytest

from promptops.estimate.tokens import TokenCounter
from promptops.retrieval.chunking import ChunkingError, Tokens, chunk_documents
from promptops.retrieval.corpus import Document
from promptops.retrieval.settings import ChunkingSpec

MODEL = "openai/text-embedding-3-small"
ARTICLE = """# Refunds

Refunds are accepted within 30 days of purchase. Ask support for a return label. Keep the receipt!

Refunds go back to the card you paid with. They take five business days to appear.

## Shipping

Shipping takes five days. Express shipping takes two days and costs extra.

```
# a comment in a code block, not a heading
```
"""


def chunks(strategy: str, size: int, overlap: int = 0, unit: str = "tokens", text: str = ARTICLE) -> list:
    document = Document("help/refunds.md", "help/refunds.md", text, {"lang": "en"})
    return chunk_documents([document], ChunkingSpec(size, overlap, strategy, unit), Tokens(MODEL, unit))


@pytest.mark.parametrize("strategy", ["fixed", "sentence", "recursive", "markdown"])
def test_no_chunk_is_longer_than_size_in_the_cost_estimates_tokens(strategy: str) -> None:
    counter = TokenCounter()
    found = chunks(strategy, 20, 5)
    assert len(found) >= 4
    for chunk in found:
        assert chunk.tokens == counter.count_text(MODEL, chunk.text) <= 20, chunk
    assert [c.id for c in found] == [f"help/refunds.md@{i}" for i in range(len(found))]
    assert all(c.metadata == {"lang": "en"} and c.document_id == "help/refunds.md" for c in found)


def test_fixed_windows_step_by_size_minus_overlap() -> None:
    text = " ".join(f"w{i}" for i in range(100))  # "w0 w1 ...": two tokens a word in cl100k_base
    starts = TokenCounter().token_starts(MODEL, text)
    found = chunks("fixed", 30, 10, text=text)
    assert [c.tokens for c in found[:-1]] == [30] * (len(found) - 1)
    assert found[1].text == text[starts[20]:starts[50]].strip()  # the second window starts 20 tokens on
    assert found[0].text.endswith(found[1].text[: len(found[0].text) - len(text[:starts[20]])].strip())
    assert found[-1].text.endswith("w99")


def test_sentences_are_kept_whole_and_the_overlap_repeats_the_last_ones() -> None:
    found = [c.text for c in chunks("sentence", 24, 12)]
    assert found[:2] == [
        "# Refunds\n\nRefunds are accepted within 30 days of purchase. Ask support for a return label.",
        # the last sentence of the chunk before (8 tokens, within the overlap of 12), then new ones
        "Ask support for a return label. Keep the receipt!\n\nRefunds go back to the card you paid with.",
    ]
    assert all(t.endswith((".", "!", "```", "heading", "Shipping")) for t in found)


def test_recursive_packs_paragraphs_before_cutting_them() -> None:
    found = [c.text for c in chunks("recursive", 200)]
    assert len(found) == 1 and found[0] == ARTICLE.strip()
    paragraphs = [c.text for c in chunks("recursive", 30)]
    assert paragraphs == [  # whole paragraphs, as many as fit in 30 tokens
        "# Refunds\n\nRefunds are accepted within 30 days of purchase. Ask support for a return label. "
        "Keep the receipt!",
        "Refunds go back to the card you paid with. They take five business days to appear.\n\n## Shipping",
        "Shipping takes five days. Express shipping takes two days and costs extra.\n\n```\n"
        "# a comment in a code block, not a heading\n```",
    ]


def test_markdown_never_spans_two_sections_and_ignores_headings_in_code() -> None:
    found = [c.text for c in chunks("markdown", 200)]
    assert len(found) == 2
    assert found[0].startswith("# Refunds") and "Shipping" not in found[0]
    assert found[1].startswith("## Shipping") and found[1].endswith("not a heading\n```")


def test_characters_as_the_unit() -> None:
    found = chunks("fixed", 50, 10, unit="characters")
    assert all(len(c.text) <= 50 and c.tokens == len(c.text) for c in found)
    assert ARTICLE[40:90].strip() == found[1].text


@pytest.mark.parametrize("spec, message", [
    (ChunkingSpec(100, 0, "semantic"), "chunking.strategy 'semantic' is not run by promptops yet"),
    (ChunkingSpec(100, 100, "fixed"), "chunking.overlap (100) must be smaller than chunking.size (100)"),
])
def test_settings_that_cannot_run_say_so(spec: ChunkingSpec, message: str) -> None:
    with pytest.raises(ChunkingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        chunk_documents([Document("a.md", "a.md", "text")], spec, Tokens(MODEL, "tokens"))
