"""The check's report renderers on a real run: GitHub's size limit, balanced Markdown, escaped HTML."""

from __future__ import annotations

import os

import pytest
from markdown_it import MarkdownIt

from helpers.repo import git
from promptops.ci import MAX_REGRESSED_SHOWN, CheckOptions, run_check
from promptops.evals.execute import EvalOptions
from promptops.report import check
from promptops.testing import Rule, StubServer

CASES = 40
PROMPT = """\
id: echo.long
model: {name: openai/gpt-4o-mini, params: {max_tokens: 16000}}  # room for a 100,000-character answer
inputs: {type: object, required: [n], properties: {n: {type: integer}}}
messages:
  - {role: system, content: "STYLE"}
  - {role: user, content: "Case {{ n }}"}
"""
SUITE = "prompt: echo.long\ncases:\n" + "".join(
    f"  - {{id: case-{n:02d}, vars: {{n: {n}}}, assert: [{{type: contains, value: fine}}]}}\n" for n in range(CASES))
LONG = "<b>bold</b> @someone " + "x" * 100_000


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("repo")
    git(root, "init", "-q", "-b", "main")
    (root / "promptops.yaml").write_text("eval: {concurrency: 8}\n")
    (root / "echo.prompt.yaml").write_text(PROMPT.replace("STYLE", "Be fine."))
    (root / "echo.eval.yaml").write_text(SUITE)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    (root / "echo.prompt.yaml").write_text(PROMPT.replace("STYLE", "Be long."))
    rules = [Rule(system="long", reply=LONG), Rule(reply="all fine")]
    with StubServer(rules=rules) as stub:
        cwd = os.getcwd()
        os.chdir(root)
        try:
            options = CheckOptions(base="HEAD", eval_options=EvalOptions(api_base=stub.base_url))
            yield run_check(root, options)
        finally:
            os.chdir(cwd)


def test_a_regression_that_no_gate_catches_is_a_warning(report) -> None:
    [comparison] = report.evals.comparisons
    assert sum(x.status == "regressed" for x in comparison.cases) == CASES
    assert report.verdict.level == "warn" and report.verdict.exit_code == 0
    assert "a regression beyond noise (40 regressed, 0 fixed" in report.verdict.warnings[0]


@pytest.mark.parametrize("limit", [20_000, 6_000])
def test_a_body_over_the_limit_trims_its_largest_details_and_says_where_the_rest_is(report, limit: int) -> None:
    body = check.render_markdown(report, limit=limit, full_report="the workflow run's summary")
    assert len(body) <= limit
    assert "Trimmed to keep this comment under GitHub's size limit" in body
    assert "The full report: the workflow run's summary." in body
    assert body.count("<details>") == body.count("</details>")
    assert body.splitlines()[0].startswith("## ⚠️ promptops: Warn")  # the verdict and the table survive
    assert "| echo.long | 100% → 0% | 40 confirmed |" in body
    tokens = MarkdownIt("commonmark").parse(body)
    assert not [t for t in tokens if t.type == "html_block" and "<b>" in t.content]


def test_the_full_report_keeps_every_regressed_case_shown(report) -> None:
    body = check.render_markdown(report, limit=check.SUMMARY_LIMIT)
    assert "Trimmed" not in body and 30_000 < len(body) < 60_000  # 100,000-character answers are clipped
    assert len(check.render_markdown(report)) <= check.COMMENT_LIMIT
    assert body.count("**case-") == MAX_REGRESSED_SHOWN
    assert f"…and {CASES - MAX_REGRESSED_SHOWN} more regressed cases" in body


def test_the_html_page_escapes_model_output_and_fetches_nothing(report) -> None:
    page = check.render_html(report)
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    assert page.count("<svg") >= 3


def test_the_retrieval_verdict_counts_cases_that_lost_only_some_of_their_sources() -> None:
    """A case that keeps one of its two expected sources still hits: it is not "lost", but it must not vanish
    from the line that sits above its own "lost help/loans.md" detail."""
    from types import SimpleNamespace

    from promptops.report.evals import source_verdict

    def change(lost: tuple[str, ...], head_recall: float) -> SimpleNamespace:
        return SimpleNamespace(lost=lost, head_recall=head_recall)

    comparison = SimpleNamespace(lost=1, gained=0, changes=[change(("kb/a.md",), 0.0), change(("kb/b.md",), 0.5),
                                                            change((), 1.0)])
    assert source_verdict(comparison) == "1 case(s) lost every expected source, 0 gained; 1 more lost some of theirs"
    comparison.changes = comparison.changes[:1]
    assert source_verdict(comparison) == "1 case(s) lost every expected source, 0 gained"
