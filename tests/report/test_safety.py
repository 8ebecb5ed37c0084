"""Untrusted text in GitHub Markdown: a hostile model output stays harmless."""

from __future__ import annotations

import collections
import dataclasses
import enum
import html
import json
import re

import pytest

from promptops.report.safety import (
    JOINER,
    REDACTED,
    Redactor,
    block,
    inert_log,
    inline,
    log_line,
    redact,
    secrets_from_env,
)

HOSTILE = (
    "Hi @octocat and @acme/security-team! <img src=x onerror=alert(1)> <script>alert(2)</script>\n"
    "</details><details open><summary>pwned</summary>\n"
    "```\nclosed the fence?\n~~~\n`````\n"
    "[click](javascript:alert(3)) ![pixel](https://evil.example/p.png) <https://evil.example>\n"
    "Fixes #12, see GH-34 and other/repo#56, https://evil.example/x www.evil.example mail me@evil.example\n"
    "| a | b |\n*bold* _it_ ~~gone~~ $x^2$ &lt;b&gt; \x1b[31mred\x1b[0m \u202eevil\u202c\r\n"
    "# heading\n- item\n"
)
LONG_HOSTILE = HOSTILE + "A" * 100_000
# The same text as a reader may see it: controls and bidi overrides gone.
VISIBLE = re.sub(r"[\x1b\u202e\u202c]", "", LONG_HOSTILE.replace("\r\n", "\n"))


def markdown():
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])


def all_tokens(tokens):
    for token in tokens:
        yield token
        yield from all_tokens(token.children or [])


def test_inline_is_one_harmless_line():
    out = inline(LONG_HOSTILE)
    assert "\n" not in out and "\r" not in out and "<" not in out and ">" not in out
    shown = html.unescape(out)  # the text GitHub's mention, reference and autolink filters see
    assert not re.search(r"@\w", shown), "a live mention"
    assert not re.search(r"#\d|GH-\d", shown, re.IGNORECASE), "a live issue reference"
    assert not re.search(r"https?://|www\.", shown), "a live autolink"
    assert "\x1b" not in out and "\u202e" not in out
    assert not set("|`*_[]~$\\") & set(out), "raw Markdown punctuation"
    assert out.endswith(f"… ({len(' '.join(VISIBLE.split())) - 200:,} more chars)")
    assert len(out) < 200 * 7  # every character shown costs at most "&#126;"


def test_inline_renders_as_plain_text_in_a_table_cell():
    md = markdown()
    cell = inline(HOSTILE, max_chars=10_000)
    tokens = md.parse(f"| answer | score |\n|---|---|\n| {cell} | 0.5 |\n")
    kinds = [t.type for t in all_tokens(tokens)]
    assert kinds.count("td_open") == 2, "the text split the table row"
    markup = {"html_inline", "html_block", "link_open", "image", "em_open", "strong_open", "s_open", "code_inline"}
    assert not markup & set(kinds)
    html = md.render(f"| answer |\n|---|\n| {cell} |\n")
    assert "<img" not in html and "<script" not in html and "<details" not in html and "</details" not in html
    text = "".join(t.content for t in all_tokens(tokens) if t.type == "text")
    # What a reader sees is the model's text (minus controls), with invisible word joiners.
    assert "@" + JOINER + "octocat" in text and "<img src=x onerror=alert(1)>" in text and "*bold*" in text


def test_inline_in_a_sentence_starts_nothing():
    md = markdown()
    for text in ("# heading", "- item", "+ item", "1. item", "2) item", "> quote", "=== ", "***", "    code"):
        kinds = [t.type for t in md.parse(inline(text))]
        assert kinds == ["paragraph_open", "inline", "paragraph_close"], (text, kinds)


def test_inline_short_text_is_kept_whole():
    assert inline("The answer is 42.") == "The answer is 42."
    assert inline("a\n\n  b\tc") == "a b c"
    assert inline("x" * 12, max_chars=10) == "x" * 10 + "… (2 more chars)"


def test_block_cannot_be_closed_from_inside():
    md = markdown()
    out = block(LONG_HOSTILE)
    tokens = md.parse(out)
    assert [t.type for t in tokens] == ["fence"]
    assert tokens[0].content.startswith("Hi @octocat") and "</details>" in tokens[0].content
    assert tokens[0].content.rstrip("\n").endswith(f"… ({len(VISIBLE) - 2000:,} more chars)")
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out
    assert len(out) < 2_100


def test_block_inside_details_stays_inside():
    md = markdown()
    document = f"<details><summary>Answer</summary>\n{block(HOSTILE)}\n</details>\n\nAfter.\n"
    tokens = md.parse(document)
    assert [t.type for t in tokens] == ["html_block", "fence", "html_block",
                                        "paragraph_open", "inline", "paragraph_close"]
    assert tokens[2].content.strip() == "</details>"
    html = md.render(document)
    assert "<img" not in html and "<script" not in html and html.count("<details") == 1


@pytest.mark.parametrize("run", [3, 4, 10])
def test_block_fence_outgrows_any_backtick_run(run):
    text = f"before\n{'`' * run}\nafter"
    out = block(text)
    assert out.startswith("\n" + "`" * (run + 1) + "text\n")
    tokens = markdown().parse(out)
    assert [t.type for t in tokens] == ["fence"] and tokens[0].content == text + "\n"


def test_block_of_nothing_is_an_empty_fence():
    assert [t.type for t in markdown().parse(block(""))] == ["fence"]


def test_redact_known_secrets_and_token_shapes():
    github_token = "ghp_" + "a1B2c3D4" * 5
    text = (f"key=sk-proj-{'x' * 30} env=very-secret-value gh={github_token} "
            "db=postgres://app:hunter22@db.internal/prod short=abc aws=AKIAABCDEFGHIJKLMNOP")
    out = redact(text, ["very-secret-value", "abc", "very-secret"])
    assert out == (f"key={REDACTED} env={REDACTED} gh={REDACTED} db=postgres://app:{REDACTED}@db.internal/prod "
                   f"short=abc aws={REDACTED}")


def test_secrets_from_env_take_secret_looking_names_only():
    env = {
        "GITHUB_TOKEN": "ghs_0123456789", "OPENAI_API_KEY": "sk-abcdef", "DB_PASSWORD": "pw",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
        "PRIVATE_KEY": "-----BEGIN KEY-----\nMIIEpAIBAAKCAQEA\n-----END KEY-----",
        "HOME": "/home/runner", "GITHUB_SHA": "0" * 40, "TOKENIZER": "cl100k_base",
        "PGPASSWORD": "pg-secret-1", "WATSONX_ZENAPIKEY": "zen-secret-2", "DB_PASS": "db-secret-3",
        "HFTOKEN": "hf-secret-4", "PASSENGERS": "many-people", "MONKEY_BUSINESS": "bananas",
    }
    found = secrets_from_env(env)
    assert {"ghs_0123456789", "sk-abcdef", "wJalrXUtnFEMI", "MIIEpAIBAAKCAQEA", env["PRIVATE_KEY"]} <= set(found)
    assert {"pg-secret-1", "zen-secret-2", "db-secret-3", "hf-secret-4"} <= set(found)
    assert "pw" not in found and "/home/runner" not in found and "0" * 40 not in found and "cl100k_base" not in found
    assert "many-people" not in found and "bananas" not in found
    assert redact("PEM line MIIEpAIBAAKCAQEA here", found) == f"PEM line {REDACTED} here"


def test_inline_is_the_same_inert_text_inside_summary():
    """Backslash escapes are shown as they are inside an HTML block; character references are not."""
    text = "@acme/everyone/#12 see https://evil.example/x and www.evil.example, my_key *bold*"
    tokens = markdown().parse(f"<details><summary>{inline(text)}</summary>\n\nbody\n\n</details>\n")
    summary = html.unescape(tokens[0].content)
    assert tokens[0].type == "html_block" and "\\" not in summary
    assert "everyone" in summary and "my_key *bold*" in summary
    assert not re.search(r"@\w|#\d|\w://|www\.", summary)


def test_redactor_finds_a_secret_in_every_form_a_report_gives_it():
    from urllib.parse import quote
    from xml.etree import ElementTree

    import markupsafe

    secret = 'org_live_"7f3a"<&>_9c2e'
    redact_all = Redactor([secret])
    element = ElementTree.Element("failure", message=secret)
    element.text = secret
    forms = [secret, inline(secret), inline("x " + secret), str(markupsafe.escape(secret)), html.escape(secret),
             json.dumps(secret), json.dumps(secret, ensure_ascii=False), ElementTree.tostring(element, "unicode"),
             quote(secret, safe="/"), str(markupsafe.escape(json.dumps(secret)))]
    for form in forms:
        assert "7f3a" not in redact_all(f"before {form} after"), form
    assert redact_all("the unrelated text stays") == "the unrelated text stays"


def test_token_shapes_and_url_passwords_are_redacted_escaped_too():
    token = "github_pat_" + "A1b2_C3d4" * 5
    assert redact(inline(f"token {token} here"), []) == f"token {REDACTED} here"
    assert redact(inline("db postgres://app:hunter22@db.internal/x"), []).count("hunter22") == 0


class Kind(str, enum.Enum):
    SECRET = "s3cr3t-value"


@dataclasses.dataclass(frozen=True)
class Leaf:
    text: str
    kind: Kind
    pair: tuple[str, int]


def test_redacting_data_copies_every_string_and_keeps_the_rest():
    Pair = collections.namedtuple("Pair", "a b")
    original = {"leaves": [Leaf("has s3cr3t-value", Kind.SECRET, ("s3cr3t-value", 1))],
                "pair": Pair("s3cr3t-value", 2), "n": 3}
    copy = Redactor(["s3cr3t-value"]).data(original)
    assert copy == {"leaves": [Leaf(f"has {REDACTED}", Kind.SECRET, (REDACTED, 1))], "pair": Pair(REDACTED, 2), "n": 3}
    assert copy["leaves"][0].kind is Kind.SECRET  # an enum is a name, not text
    assert original["leaves"][0].text == "has s3cr3t-value"  # the original is left alone


def test_inert_log_leaves_no_line_the_runner_obeys():
    text = "ok\n  ::set-output name=x::y\r::add-mask::z\r\n\u2003::error::e and ##[stop-commands]t"
    out = inert_log(text)
    lines = re.split(r"\r\n|\r|\n", out)
    assert not [line for line in lines if line.lstrip().startswith("::") or "##[" in line]
    assert out.replace(JOINER, "") == text  # what it says is unchanged
    assert log_line("a\nb\x1b") == "a\\nb\\x1b"


def test_the_diff_comment_fences_a_hostile_template_hunk_as_every_report_does():
    from promptops.model.diff import FieldChange, ItemDiff, SpecDiff, TemplateDiff
    from promptops.report import diff as diff_report

    unified = "--- a\n+++ b\n@@ -1 +1 @@\n-old\n+" + HOSTILE.replace("\n", "\n+")
    item = ItemDiff("prompt", "p", "modified", "p.prompt.yaml", "p.prompt.yaml", "v1", "v2",
                    changes=(FieldChange("messages[0].content", "messages", "changed", "old", HOSTILE),),
                    template_diffs=(TemplateDiff(0, "system", unified),))
    out = diff_report.render_markdown(SpecDiff((item,), (), ()), "main", "head")
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out  # as block() leaves any text
    document = out.split("</summary>", 1)[1]
    tokens = markdown().parse(document)
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1 and fences[0].info == "diff" and "</details><details open>" in fences[0].content
    assert [t.content.strip() for t in tokens if t.type == "html_block"] == ["</details>"]


@pytest.mark.parametrize("share", [0.0, 0.005, 0.125, 0.2449, 0.655, 1 / 3, 0.995, 1.0])
def test_the_one_percentage_formatter_writes_what_each_report_wrote_before(share):
    from promptops.report.formatting import percent

    assert percent(share * 100, places=0) == f"{share:.0%}"  # pass rates in the comment and the charts
    assert percent(share * 100) == f"{share:.1%}" == f"{share * 100:.1f}%"  # gate reasons, eval text
    assert percent(share * 100 - 50, signed=True) == f"{share * 100 - 50:+.1f}%"  # cost changes
