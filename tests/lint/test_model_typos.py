"""PO403: a mistyped model name is an error with "did you mean ...?"; distinct models never are.

Against the price map of the installed (pinned) litellm, read offline as lint reads it.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from promptops.lint import lint
from promptops.modelnames import closest, typo_edits
from promptops.models import ModelCatalog
from promptops.pricing import litellm_price_map

pytestmark = pytest.mark.skipif(litellm_price_map() is None, reason="needs litellm's bundled price map")

CATALOG = ModelCatalog()

# Written name -> the known name it was meant to be.
TYPOS = {
    "openai/gpt-4o-mni": "openai/gpt-4o-mini",  # a letter dropped inside a word
    "openai/gtp-4o": "openai/gpt-4o",  # two letters swapped
    "openai/gpt-4o-minii": "openai/gpt-4o-mini",  # a letter doubled
    "openai/gpt4o-mini": "openai/gpt-4o-mini",  # a separator dropped
    "openai/gpt_4o_mini": "openai/gpt-4o-mini",  # two separators changed, in a long name
    "openai/GPT-4o-mini": "openai/gpt-4o-mini",  # letter case
    "openai/gtp-4o-mni": "openai/gpt-4o-mini",  # two slips in a long name
    "gpt-4o-mni": "gpt-4o-mini",  # no provider prefix: litellm's own keys
    "anthropic/claude-sonet-4-5": "anthropic/claude-sonnet-4-5",
    "anthropic/claude-haiko-4-5": "anthropic/claude-haiku-4-5",  # a letter changed in a long word
    "gemini/gemini-2.5-flsah": "gemini/gemini-2.5-flash",
    "vertex_ai/gemini-2.5-flahs": "vertex_ai/gemini-2.5-flash",  # a key litellm files without the prefix
    "openai/text-embeding-3-small": "openai/text-embedding-3-small",
    "azure/eu/gpt-4o-mni": "azure/eu/gpt-4o-mini",
}

# Pairs of distinct models, both in the price map, that a plain edit distance of 1-2 calls typos of
# each other. Neither may be taken for a typo of the other, even when one of them is missing from
# the map (a model newer than the pinned litellm, or one the map has dropped).
DISTINCT_NEIGHBOURS = [
    ("openai/gpt-4o", "openai/gpt-4"),  # a word more
    ("openai/gpt-4o-mini", "openai/gpt-4o"),
    ("openai/gpt-5", "openai/gpt-4"),  # other numbers
    ("openai/o1", "openai/o3"),
    ("openai/o4-mini", "openai/o3-mini"),
    ("openai/gpt-4o-2024-08-06", "openai/gpt-4o-2024-05-13"),
    ("openai/gpt-4.1-mini", "openai/gpt-4o-mini"),
    ("anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5"),
    ("gemini/gemini-3.1-flash-lite-preview", "gemini/gemini-3.1-flash-live-preview"),  # a letter changed, short word
    ("gemini/gemini-2.5-flash-lite", "gemini/gemini-2.5-flash"),
    ("zai/glm-4.5-air", "zai/glm-4.5-airx"),  # a letter added at a word's end
    ("tencent/glm-5.3-flash", "tencent/glm-5.3-flashx"),
    ("mistral/mistral-large-latest", "mistral/pixtral-large-latest"),  # two letters changed in one word
    ("mistral/magistral-small-latest", "mistral/mistral-small-latest"),
    ("fireworks_ai/glm-5p3-fast", "fireworks_ai/glm-5p3-flash"),
    ("dashscope/qwen-plus", "dashscope/qwq-plus"),
    ("dashscope/wan2.7-i2v", "dashscope/wan2.7-t2v"),
    ("databricks/databricks-bge-large-en", "databricks/databricks-gte-large-en"),
    ("databricks/databricks-glm-5-2", "databricks/databricks-gpt-5-2"),
    ("vercel_ai_gateway/cohere/command-a", "vercel_ai_gateway/cohere/command-r"),
    ("snowflake/snowflake-arctic-embed-l-v2.0", "snowflake/snowflake-arctic-embed-m-v2.0"),
    ("v0/v0-1.5-lg", "v0/v0-1.5-md"),
    ("azure/eu/gpt-4o", "azure/us/gpt-4o"),
    ("azure/speech/azure-stt", "azure/speech/azure-tts"),
    ("minimax/MiniMax-H3", "minimax/MiniMax-M3"),
    ("azure/gpt-3.5-turbo", "azure/gpt-35-turbo"),
    ("sagemaker/meta-textgeneration-llama-2-7b", "sagemaker/meta-textgeneration-llama-2-7b-f"),
]

# Real models the pinned price map no longer holds (see /work/shared/LITELLM-OFFLINE.md): unknown, so
# PO402 warns, but no typo of the models it does hold.
DROPPED = ["anthropic/claude-3-5-sonnet", "anthropic/claude-3-5-haiku", "anthropic/claude-3-5-sonnet-20241022",
           "anthropic/claude-3-opus-20240229", "anthropic/claude-sonnet-4-20250514", "anthropic/claude-opus-4-1",
           "gemini/gemini-1.5-pro", "groq/llama-3.1-8b-instant", "openai/o1-preview", "openai/gpt-4-32k"]


def test_every_key_without_a_provider_is_a_known_name() -> None:
    """Known names are the price map's keys (tests/estimate/test_pricing.py reads the map's text against json.load)."""
    data = json.loads(litellm_price_map().read_text(encoding="utf-8"))  # type: ignore[union-attr]
    data.pop("sample_spec")
    assert {key: key for key in CATALOG.names_of("") if "/" not in key} == {key: key for key in data if "/" not in key}


@pytest.mark.parametrize("written, meant", TYPOS.items())
def test_a_typo_of_a_known_model_is_named(written: str, meant: str) -> None:
    assert CATALOG.get(written) is None
    assert CATALOG.get(meant) is not None
    assert CATALOG.meant(written) == [meant]


@pytest.mark.parametrize("one, other", DISTINCT_NEIGHBOURS, ids=lambda name: name.split("/", 1)[-1])
def test_distinct_neighbours_are_never_typos_of_each_other(one: str, other: str) -> None:
    assert CATALOG.get(one) is not None and CATALOG.get(other) is not None  # both real, priced models
    assert CATALOG.meant(one) == [] and CATALOG.meant(other) == []  # a known name is never a typo
    one_model, other_model = one.split("/", 1)[1], other.split("/", 1)[1]
    assert closest(one_model, [other_model]) == [] and closest(other_model, [one_model]) == []


@pytest.mark.parametrize("name", DROPPED)
def test_models_the_price_map_dropped_are_unknown_but_no_typos(name: str) -> None:
    assert CATALOG.get(name) is None
    assert CATALOG.meant(name) == []


def test_across_the_whole_price_map_only_spellings_of_one_model_count_as_typos() -> None:
    """Take each known name away in turn: the only other known names it would be a typo of are the
    same model spelt with other separators (claude-3-5-sonnet / claude-3.5-sonnet), never another model."""
    keys = json.loads(litellm_price_map().read_text(encoding="utf-8"))  # type: ignore[union-attr]
    providers = {key.split("/", 1)[0].lower() for key in keys if "/" in key} | {""}
    confusable = []
    for provider in sorted(providers):
        by_shape = defaultdict(list)  # only names with the same numbers and word count can be typos
        for model in CATALOG.names_of(provider):
            words = _words(model)
            by_shape[(len(words), tuple(w for w in words if w.isdigit()))].append(model)
        for names in by_shape.values():
            for one, other in itertools.permutations(names, 2):
                if closest(one, [other]):
                    confusable.append((provider, one, other))
    assert confusable, "the sweep found nothing at all: is the price map empty?"
    assert [pair for pair in confusable if _words(pair[1]) != _words(pair[2])] == []


def _words(name: str) -> list[str]:
    return re.findall(r"[a-z]+|[0-9]+", name.lower())


def test_short_names_take_one_slip_and_long_names_two() -> None:
    assert typo_edits("gtp4o", "gpt-4o") == 2
    assert closest("gtp4o", ["gpt-4o"]) == []  # five characters: one slip at most
    assert closest("gtp-4o-mni", ["gpt-4o-mini"]) == ["gpt-4o-mini"]
    assert typo_edits("gtp_4o-mni", "gpt-4o-mini") == 3
    assert closest("gtp_4o-mni", ["gpt-4o-mini"]) == []  # three slips


def test_a_provider_typo_is_not_guessed() -> None:
    """Only names of the same provider are compared: another provider's model is another model."""
    assert CATALOG.meant("opneai/gpt-4o-mini") == []
    assert CATALOG.meant("openai/claude-sonet-4-5") == []  # an Anthropic model under the openai/ prefix


def test_pricing_entries_are_known_names_too() -> None:
    catalog = ModelCatalog({"openai/acme-support-ft": {"input": 0.3, "output": 1.2}})
    assert catalog.meant("openai/acme-suport-ft") == ["openai/acme-support-ft"]
    assert catalog.meant("openai/acme-support-ft") == []


def _project(tmp_path: Path, model: str, config: str = "defaults: {model: openai/gpt-4o-mini}\n") -> Path:
    (tmp_path / "promptops.yaml").write_text(config)
    (tmp_path / "a.prompt.yaml").write_text(
        f"id: a\nmodel: {{name: {model}}}\nmessages: [{{role: user, content: hi}}]\n")
    return tmp_path


def _findings(folder: Path) -> list[tuple[str, int, str, str]]:
    run = lint([], cwd=folder)
    return [(f.code, f.line, str(f.severity), f.message) for f in run.findings]


def test_lint_reports_a_typo_as_an_error_and_nothing_else(tmp_path: Path) -> None:
    ((code, line, severity, message),) = _findings(_project(tmp_path, "openai/gpt-4o-mni"))
    assert (code, line, severity) == ("PO403", 2, "error")
    assert "did you mean openai/gpt-4o-mini?" in message


def test_lint_keeps_po402_for_an_unknown_name_that_is_no_typo(tmp_path: Path) -> None:
    ((code, _, severity, message),) = _findings(_project(tmp_path, "anthropic/claude-3-5-sonnet"))
    assert (code, severity) == ("PO402", "warning")
    assert "add it under pricing:" in message


def test_a_price_for_the_name_silences_both(tmp_path: Path) -> None:
    config = "pricing:\n  openai/gpt-4o-mni: {input: 0.15, output: 0.6}\n"
    assert _findings(_project(tmp_path, "openai/gpt-4o-mni", config)) == []


def test_the_typo_search_stays_off_litellm(tmp_path: Path) -> None:
    """Lint reads the price map as a file: the typo search imports neither litellm nor anything heavy."""
    _project(tmp_path, "openai/gpt-4o-mni")
    script = ("import json, sys\nfrom pathlib import Path\nfrom promptops.lint import lint\n"
              "run = lint([], cwd=Path(sys.argv[1]))\n"
              "print(json.dumps({'codes': [f.code for f in run.findings],"
              " 'heavy': sorted(m for m in ('litellm', 'rapidfuzz', 'numpy') if m in sys.modules)}))")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"codes": ["PO403"], "heavy": []}


def test_explain_po402_fails_on_no_typo() -> None:
    """PO402's failing example must be a model that is unknown for a reason, not a misspelling."""
    from promptops.lint.registry import RULES, all_rules

    all_rules()
    failing = next(line for line in RULES["PO402"].doc.splitlines() if line.startswith("Fails:"))
    name = failing.split("name:", 1)[1].split("}", 1)[0].strip()
    assert CATALOG.get(name) is None and CATALOG.meant(name) == []
    assert "gpt-4o-mni" in RULES["PO403"].doc
