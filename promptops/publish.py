"""Where a check's report goes: files, the terminal, and inside GitHub Actions the annotations, the
step summary, $GITHUB_OUTPUT and the sticky PR comment.

No secret leaves: the report is redacted before it is rendered (the values of
secret-looking environment variables and well-known token shapes, so nothing
escapes or cuts a secret before redaction sees it), and every text is redacted
again as it leaves (``_clean``, which knows each secret's escaped forms too).
Texts with a size limit are cut after that, never before. Every line printed is
inert to the Actions runner: it can start no workflow command. Order matters: the
comment is posted first, then the check fails.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from promptops.ci import head_pass_rate
from promptops.errors import ExitCode
from promptops.github import ActionsContext, GitHubError, actions_context
from promptops.model.check import CheckReport, CheckVerdict
from promptops.report import check as renderers
from promptops.report.safety import Redactor, log_line, secrets_from_env

COMMENT_KEY = "promptops"
_FIT_TRIES = 4  # renders at most, to fit a text whose redaction made it longer


@dataclass
class Publisher:
    context: ActionsContext
    report_dir: Path
    comment: bool
    sarif: Path | None
    started: datetime  # recorded in the comment: an older run never overwrites a newer comment
    secrets: list[str] = field(default_factory=list, repr=False)  # values no output may contain
    redactor: Redactor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.redactor = Redactor(self.secrets)

    @classmethod
    def from_environment(cls, report_dir: Path, *, comment: bool, sarif: Path | None) -> Publisher:
        """Raises GitHubInputError when the Actions event file cannot be read."""
        return cls(actions_context(os.environ), report_dir, comment, sarif, datetime.now(timezone.utc),
                   secrets_from_env(os.environ))

    def publish(self, report: CheckReport) -> ExitCode:
        """Send the report everywhere it belongs; the exit code the check ends with.

        Raises OSError when a report file cannot be written (before anything is posted).
        """
        report = self.redactor.data(report)
        paths = self._write_files(report)
        if self.context.in_actions:
            self._annotate(report)
            self._summarise(report)
        posted_ok = self._post_comment(report)
        if self.context.output is not None:
            self._write_outputs(report, paths["md"])
        self._say(renderers.headline(report))
        for reason in report.verdict.failures:
            self._say(f"  fail: {reason}")
        for reason in report.verdict.warnings:
            self._say(f"  warn: {reason}")
        self._say(f"report: {paths['md']} · {paths['html']} · {paths['json']}")
        return exit_code(report.verdict, posted_ok)

    # -- sinks ---------------------------------------------------------------------------------

    def _write_files(self, report: CheckReport) -> dict[str, Path]:
        self.report_dir.mkdir(parents=True, exist_ok=True)
        paths = {kind: self.report_dir / f"report.{kind}" for kind in ("md", "html", "json")}
        paths["md"].write_text(self._fit(lambda limit: renderers.render_markdown(
            report, limit=limit, footer="Written by promptops ci."), renderers.SUMMARY_LIMIT), encoding="utf-8")
        paths["html"].write_text(self._clean(renderers.render_html(report)), encoding="utf-8")
        paths["json"].write_text(self._clean(renderers.render_json(report)), encoding="utf-8")
        if self.sarif is not None:
            from promptops.report.lint import render

            self.sarif.parent.mkdir(parents=True, exist_ok=True)
            self.sarif.write_text(self._clean(render(report.lint, "sarif")), encoding="utf-8")
        return paths

    def _annotate(self, report: CheckReport) -> None:
        from promptops.report.lint import render

        if report.lint.findings:
            sys.stdout.write(self._clean(render(report.lint, "github")))

    def _summarise(self, report: CheckReport) -> None:
        from promptops.github import append_step_summary

        if self.context.step_summary is not None:
            footer = "Written by promptops ci; the HTML report is in the promptops-report artifact."
            text = self._fit(lambda limit: renderers.render_markdown(report, limit=limit, footer=footer),
                             renderers.SUMMARY_LIMIT)
            append_step_summary(self.context.step_summary, text)

    def _post_comment(self, report: CheckReport) -> bool:
        """Create or update the sticky comment; False when GitHub failed after retries."""
        pull_request = self.context.pull_request
        if not self.comment:
            return True
        if pull_request is None:
            if self.context.in_actions:
                self._say("comment: not a pull-request event, nothing posted")
            return True
        if not self.context.token:
            self._say("comment: no GITHUB_TOKEN (pass github-token to the action), nothing posted")
            return True
        from promptops.github import ACTIONS_BOT, GitHubClient, body_limit, upsert_sticky_comment

        hint = self._full_report_hint()
        body = self._fit(lambda limit: renderers.render_markdown(report, limit=limit, full_report=hint),
                         body_limit(COMMENT_KEY))
        try:
            with GitHubClient(self.context.api_url, self.context.token) as client:
                result = upsert_sticky_comment(client, pull_request.repository, pull_request.number, body,
                                               key=COMMENT_KEY, generated_at=self.started,
                                               run=self.context.run_order,
                                               bot=self.context.comment_author or ACTIONS_BOT)
        except GitHubError as exc:
            self._say(f"comment: GitHub failed: {exc}", error=True)
            return False
        where = f" {result.url}" if result.url else ""
        reason = f" ({result.reason})" if result.reason else ""
        self._say(f"comment: {result.action}{where}{reason}")
        return True

    def _full_report_hint(self) -> str:
        context = self.context
        if context.repository and context.run_id:
            return (f"the summary of [this workflow run]({context.server_url}/{context.repository}/actions/runs/"
                    f"{context.run_id}) and its promptops-report artifact")
        return str(self.report_dir / "report.md")

    def _write_outputs(self, report: CheckReport, markdown: Path) -> None:
        from promptops.github import write_outputs

        rate = head_pass_rate(report)
        delta = report.cost.monthly_delta.absolute
        assert self.context.output is not None
        write_outputs(self.context.output, {
            "verdict": report.verdict.level,
            "pass-rate": "" if rate is None else f"{rate:.4f}",
            "cost-delta-monthly": "" if delta is None else f"{delta:.2f}",
            "report-path": str(markdown.resolve()),
            "html-report-path": str(markdown.with_suffix(".html").resolve()),
            "sarif-path": str(self.sarif.resolve()) if self.sarif else "",
        })

    # -- text out -----------------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        return self.redactor(text)

    def _fit(self, render: Callable[[int], str], limit: int) -> str:
        """``render(budget)``, redacted, within ``limit``: the cut comes last, since redacting can
        lengthen a text (``***`` for a one-letter URL password)."""
        budget = limit
        for _ in range(_FIT_TRIES):
            text = self._clean(render(budget))
            if len(text) <= limit:
                return text
            budget -= len(text) - limit
        return text[:limit]  # cut after redaction: what is left holds no secret

    def _say(self, line: str, error: bool = False) -> None:
        """One line for the job's log: redacted, and inert (a file name holding a line break and
        "::set-output" stays text)."""
        print(log_line(self._clean(line)), file=sys.stderr if error else sys.stdout, flush=True)


def exit_code(verdict: CheckVerdict, posted: bool) -> ExitCode:
    """The check's exit code once its report is out: the verdict's, except that a passing check whose comment
    could not be posted is a service failure (3). A failing verdict keeps its own code; --fail-on never
    reports only, whatever GitHub did."""
    if not posted and verdict.exit_code == ExitCode.OK and verdict.fail_on != "never":
        return ExitCode.SERVICE
    return ExitCode(verdict.exit_code)
