"""`promptops eval`: run eval suites at head (and base), every call cached, and compare them with gates."""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from promptops.commands.options import eval_run_options, ref_options
from promptops.commands.output import View, format_option, output_option, render, write_file, write_report
from promptops.commands.refs import head_snapshot, snapshots
from promptops.errors import ExitCode, PromptopsError, ServiceError, UsageError

if TYPE_CHECKING:
    from promptops.model.evals import SuiteComparison
    from promptops.resultcache import CacheError


@dataclass(frozen=True)
class EvalResults:
    comparisons: list[SuiteComparison]
    skipped: list[str]


def _text(results: EvalResults, view: View) -> str:
    from promptops.report.evals import render_text

    return render_text(results.comparisons, results.skipped)


def _json(results: EvalResults, view: View) -> str:
    from promptops.report.evals import render_json

    return render_json(results.comparisons, view.base_label, view.head_label, results.skipped)


RENDERERS = {"text": _text, "json": _json}


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """--shard I/N."""
    if value is None:
        return None
    index, sep, count = value.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise click.BadParameter(f"{value!r} is not I/N with 1 <= I <= N", param_hint="--shard")
    return int(index), int(count)


@click.command("eval")
@ref_options
@click.option("--no-base", is_flag=True, help="Run the head only, without comparing.")
@click.option("--suite", "suites", multiple=True, metavar="NAME",
              help="Run this suite (its file path, or the prompt id it tests); repeatable. "
                   "Implies no impact selection.")
@eval_run_options
@format_option(RENDERERS, default="text", help=None)
@output_option("Write the results here.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Also write JUnit XML here.")
@click.option("--shard", metavar="I/N", callback=lambda ctx, param, value: parse_shard(value),
              help="Run only the I-th of N shares of the cases (a CI matrix); `promptops merge` joins the caches.")
def eval_command(base: str | None, head: str | None, staged: bool, no_base: bool, suites: tuple[str, ...],
                 run_all: bool, repeat: int | None, confirm: int | None, concurrency: int | None,
                 max_cost: float | None, api_base: str | None, fmt: str, output: Path | None, junit: Path | None,
                 shard: tuple[int, int] | None, cache_file: Path | None, workers: int | None) -> None:
    """Run eval suites at head (and base), every call cached, and compare them with gates.

    By default only the suites whose prompt, retrieval config, cases or
    dataset changed between base and head run. Exit 1 when a gate fails, 2
    when a ref, the config or an API key is missing or the result cache cannot
    be written, 3 when model calls got no answer after retries.
    """
    import asyncio

    from promptops.evals.compare import mark_incomplete
    from promptops.evals.execute import EvalOptions, run_evaluation
    from promptops.evals.runner import MissingCredentials
    from promptops.findings import Severity
    from promptops.report.evals import render_junit
    from promptops.report.progress import Progress
    from promptops.report.safety import environment_redactor
    from promptops.resultcache import CacheError
    from promptops.retrieval.evalcases import RetrievedPassages
    from promptops.specs import kind_of

    if no_base:
        head_ref, head_ws = head_snapshot(head, staged)
        base_ref, base_ws = head_ref, head_ws
    else:
        base_ref, head_ref, base_ws, head_ws = snapshots(base, head, staged)
    options = EvalOptions(compare=not no_base, suites=suites, run_all=run_all, repeat=repeat, confirm=confirm,
                          concurrency=concurrency, max_cost_usd=max_cost, api_base=api_base, shard=shard,
                          cache=cache_file, workers=workers, base_label=str(base_ref),
                          passages=RetrievedPassages(None if no_base else base_ws))
    # A SIGTERM (a CI job cancelled) stops the run as Ctrl-C does: calls in flight are cancelled, every
    # finished answer is already stored, worker processes are stopped; exit 130.
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    progress = Progress()
    try:
        comparisons, skipped = asyncio.run(run_evaluation(base_ws, head_ws, options, progress))
    except MissingCredentials as exc:
        raise UsageError(f"evals not run: {exc}") from exc
    except CacheError as exc:
        raise UsageError(cache_failed(exc)) from exc
    except KeyboardInterrupt:  # click would call this "Aborted!" and exit 1, the code of a failed gate
        raise PromptopsError("interrupted; every answer that arrived is in the cache, a re-run makes only the "
                             "calls left", ExitCode.INTERRUPTED) from None
    finally:
        progress.close()
    unanswered = mark_incomplete(comparisons)
    # A file that does not load is no suite run and no PASS: named with its line (lint says more).
    unloaded = [problem for problem in head_ws.problems if problem.severity is Severity.ERROR]
    skipped = [*skipped, *(f"not loaded: {problem}" for problem in unloaded)]
    # Redacted before rendering (nothing escapes or cuts a secret first) and again as each text leaves.
    redact = environment_redactor()
    results = EvalResults(redact.data(comparisons), redact.data(skipped))
    view = View(base_label=None if no_base else str(base_ref), head_label=str(head_ref))
    # Every answer is in the cache: a re-run with a writable path makes no model call.
    write_report(redact(render(RENDERERS, fmt, results, view)), fmt, output, cannot_write=_cannot_write_results)
    if junit:
        write_file(junit, redact(render_junit(results.comparisons)), cannot_write=_cannot_write_results)
    if unanswered:  # as in `promptops ci`: a run that could not ask the model has no verdict to give
        raise ServiceError(f"{unanswered} model call(s) got no answer after retries, so the results are "
                           "incomplete; a re-run makes only the calls that are missing")
    # A gate that fails on the base as well fails the run unless gates.preexisting says warn.
    tolerated = head_ws.config.gates.preexisting == "warn"
    gates = [gate for comparison in results.comparisons for _, gate in comparison.gates]
    if any(not gate.passed and not (gate.preexisting and tolerated) for gate in gates):
        sys.exit(ExitCode.FINDINGS)
    if any(kind_of(problem.path) == "eval" for problem in unloaded):  # a suite that could not run
        sys.exit(ExitCode.FINDINGS)


def _cannot_write_results(path: Path, exc: OSError) -> str:
    return f"cannot write the results: {exc}"


def cache_failed(exc: CacheError) -> str:
    """Why a run stopped when the result cache could not store an answer, and what to do."""
    return (f"evals stopped: {exc}. An answer counts only once it is stored (one that is not would be paid for "
            "again), so the run stopped: free space or make the cache writable, or point --cache (eval.cache in "
            "promptops.yaml) at a file that can be written")
