"""`promptops ci`: the pull-request check (lint, cost, diff and evals of the change, one report, one comment)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from promptops.commands.eval import cache_failed
from promptops.commands.options import eval_run_options
from promptops.errors import UsageError

if TYPE_CHECKING:
    from promptops.ci import CheckOptions
    from promptops.evals.execute import EvalOptions
    from promptops.github import ActionsContext


@click.command()
@click.option("--base", metavar="REF",
              help="Compare from this ref (default: the merge-base with the pull request's base branch).")
@click.option("--eval/--no-eval", "run_evals", default=True, show_default=True,
              help="Run the eval suites the change touches (lint, cost and diff always run).")
@click.option("--comment/--no-comment", default=True, show_default=True,
              help="Post or update the sticky PR comment (inside a pull-request job, with a token).")
@click.option("--fail-on", type=click.Choice(["error", "regression", "never"]), default="error", show_default=True,
              help="error: any failure fails the check; regression: only failed eval gates; never: report only.")
@eval_run_options
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".promptops/report"),
              show_default=True, help="Where report.md, report.html and report.json are written.")
@click.option("--sarif", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write lint findings as SARIF here.")
def ci(base: str | None, run_evals: bool, comment: bool, fail_on: str, run_all: bool, repeat: int | None,
       confirm: int | None, concurrency: int | None, max_cost: float | None, api_base: str | None,
       cache_file: Path | None, workers: int | None, report_dir: Path, sarif: Path | None) -> None:
    """The pull-request check: lint, cost, diff and evals of the change, one report, one sticky comment.

    Runs anywhere; inside GitHub Actions it also annotates lint findings,
    writes the step summary and $GITHUB_OUTPUT, and posts or updates one PR
    comment (GITHUB_TOKEN). Exit 0 pass, 1 a gate or finding fails (see
    --fail-on), 2 the config or a ref is unusable, 3 the model service or
    GitHub failed after retries. The comment is posted before the check fails.
    """
    from promptops.ci import run_check
    from promptops.evals.execute import EvalOptions
    from promptops.publish import Publisher
    from promptops.report.progress import Progress
    from promptops.resultcache import CacheError

    publisher = Publisher.from_environment(report_dir, comment=comment, sarif=sarif)
    try:
        report_dir.mkdir(parents=True, exist_ok=True)  # before any model call is paid for
    except OSError as exc:
        raise UsageError(f"cannot write the report to {report_dir}: {exc.strerror or exc}; pass --report-dir with a "
                         "folder that can be written") from exc
    eval_options = EvalOptions(run_all=run_all, repeat=repeat, confirm=confirm, concurrency=concurrency,
                               max_cost_usd=max_cost, api_base=api_base, cache=cache_file, workers=workers)
    options = _check_options(base, run_evals, fail_on, eval_options, publisher.context)
    progress = Progress()
    try:
        report = run_check(Path.cwd(), options, progress)
    except CacheError as exc:
        raise UsageError(cache_failed(exc)) from exc
    finally:
        progress.close()
    try:
        code = publisher.publish(report)
    except OSError as exc:
        raise UsageError(f"cannot write the report: {exc}") from exc
    sys.exit(code)


def _check_options(base: str | None, run_evals: bool, fail_on: str, eval_options: EvalOptions,
                   context: ActionsContext) -> CheckOptions:
    from promptops.ci import CheckOptions

    pull_request = context.pull_request
    return CheckOptions(base=base, evals=run_evals, eval_options=eval_options, fail_on=fail_on,
                        from_fork=bool(pull_request and pull_request.is_fork))
