"""The command line: a thin layer over the library functions of each stage."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any, Iterator, NoReturn, Sequence

import click

from promptops import __version__

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_SERVICE = 0, 1, 2, 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="promptops")
def cli() -> None:
    """LLM prompts and retrieval configs as code: lint, cost, evals, PR checks."""


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github", "sarif"]),
              help="Output format (default: github inside GitHub Actions, else text).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to this file instead of standard output.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
@click.option("--explain", metavar="CODE", help="Print what a rule checks, with examples, and exit.")
@click.option("--color/--no-color", default=None, help="Colour text output (default: on a terminal).")
def lint(paths: tuple[Path, ...], fmt: str | None, output: Path | None, strict: bool,
         explain: str | None, color: bool | None) -> None:
    """Check prompt, retrieval, eval and config files (default: the whole project).

    Files named are counted; promptops.yaml and the eval suites of the
    prompts named are checked too, and counted as related.

    Exit codes: 0 clean, 1 errors found (or warnings with --strict),
    2 unusable input (a broken promptops.yaml, a path that does not exist,
    nothing to lint; under pre-commit, a file no promptops.yaml claims).
    """
    from promptops.lint import find_rule, lint as run_lint
    from promptops.lint.engine import not_promptops_files, nothing_to_lint, outside_projects
    from promptops.lint.output import render

    if explain:
        rule = find_rule(explain)
        if rule is None:
            raise click.UsageError(f"no rule {explain!r}; codes look like PO202")
        click.echo(rule.explain())
        return
    missing = [str(p) for p in paths if not os.path.lexists(p)]
    if missing:
        raise click.UsageError(f"no such file or folder: {', '.join(missing)}")
    if os.environ.get("PRE_COMMIT") == "1":  # set by pre-commit for its hooks
        _refuse_files_outside_projects(outside_projects(paths))
    for path in not_promptops_files(paths):
        click.echo(f"promptops lint: skipped {path}: not a promptops file by its name", err=True)
    fmt = fmt or ("github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text")
    run = run_lint(list(paths))
    if not run.files and not run.config_errors:
        _fail(nothing_to_lint(list(paths), Path.cwd().resolve()))
    use_color = (color if color is not None else sys.stdout.isatty()) and fmt == "text" and output is None
    report = render(run, fmt, color=use_color)
    if output:
        _write_report(output, report)
    else:
        click.echo(_inert_stdout(report, fmt), nl=False, color=use_color)
    if run.config_errors:
        sys.exit(EXIT_USAGE)
    if run.errors or (strict and run.findings):
        sys.exit(EXIT_FINDINGS)


def _refuse_files_outside_projects(orphans: list[Path]) -> None:
    """A commit hook given files that no promptops.yaml claims is set up wrong: linting them with the default
    settings would pass what the project's settings (rules, prices, paths) might not, and say nothing."""
    if not orphans:
        return
    more, they = (f" (and {len(orphans) - 1} more)", "they belong") if len(orphans) > 1 else ("", "it belongs")
    folder = orphans[0].parent.resolve()
    _fail(f"{orphans[0]}{more}: no promptops.yaml in {folder} or a folder above it, so {they} to no promptops "
          "project. Run `promptops init` where the project's files live, or narrow the hook with `files:` or "
          "`exclude:` in .pre-commit-config.yaml")


@cli.command()
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite files that already exist (a .gitignore is only appended to).")
def init(directory: Path, force: bool) -> None:
    """Scaffold a promptops project in DIRECTORY (default: the current folder).

    Writes promptops.yaml, an example prompt and eval suite, a
    .pre-commit-config.yaml whose hooks run the installed promptops (lint,
    cost), a .gitignore for the files each checkout makes for itself (the eval
    cache, the promotion lock), and a GitHub workflow that runs the promptops
    check on every pull request. Existing files are left alone (and listed)
    unless --force is given; an existing .gitignore gets the lines it lacks
    appended, never replaced. The result lints clean.
    """
    import shlex

    from promptops.scaffold import ScaffoldError, scaffold

    try:
        result = scaffold(directory, force=force, repo_root=_nearest_git_root(directory))
    except ScaffoldError as exc:
        click.echo(f"promptops init: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    for label, paths in (("created", result.created), ("overwrote", result.overwritten),
                         ("appended", result.appended), ("unchanged", result.unchanged)):
        for path in paths:
            click.echo(f"{label:>9}  {path}")
    for path in result.skipped:
        click.echo(f"{'skipped':>9}  {path} (already exists; --force overwrites it)")
    for note in result.notes:
        click.echo(f"\nnote: {note}", err=True)
    where = "" if directory.resolve() == Path.cwd().resolve() else f"cd {shlex.quote(str(directory))} && "
    click.echo(f"\nNext: {where}promptops lint   (then `pre-commit install` to lint on every commit)")


def _nearest_git_root(directory: Path) -> Path | None:
    """The git top level around DIRECTORY, asking from its nearest existing folder."""
    from promptops import git

    existing = directory.resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return git.toplevel(existing) if existing.is_dir() else None


@cli.command()
@click.argument("prompt_id")
@click.option("--vars", "vars_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A JSON or YAML file with the variables (a mapping).")
@click.option("--var", "pairs", multiple=True, metavar="NAME=VALUE",
              help="One variable (repeatable; overrides --vars). A VALUE that is JSON is used as such "
                   "(a list, number, object, true/false/null); anything else is a string. Quote JSON to force "
                   "a string: --var 'n=\"3\"'.")
def render(prompt_id: str, vars_file: Path | None, pairs: tuple[str, ...]) -> None:
    """Print the exact messages PROMPT_ID would send, as JSON (model, params, messages).

    Variables are validated against the prompt's inputs schema and rendered
    in the bounded sandbox. Exit 2 when the prompt, the variables or the
    template cannot be used.

    \b
    Examples:
      promptops render support.answer --vars case.yaml
      promptops render support.answer --var question='Where is my refund?' --var 'passages=["Refunds take 5 days."]'
    """
    import json

    from promptops.config import ConfigError, load_workspace
    from promptops.templating import InputError, RenderLimits, TemplateError, render_messages, validate_inputs

    try:
        workspace = load_workspace(Path.cwd())
    except ConfigError as exc:
        _fail(str(exc))
    spec = workspace.prompts.get(prompt_id)
    if spec is None:
        known = ", ".join(sorted(workspace.prompts)) or "none"
        _fail(f"no prompt has id '{prompt_id}' (known: {known})")
    variables = _read_vars(vars_file) if vars_file else {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--var")
        variables[name] = _var_value(value)
    limits = RenderLimits.from_config(workspace.config.section("lint").get("render_limits") or {})
    try:
        validate_inputs(spec, variables)
        messages = render_messages(spec, variables, limits)
    except (InputError, TemplateError) as exc:
        _fail(f"{spec.source.display}: {getattr(exc, 'message', None) or exc}")
    document = {"id": spec.id, "version": spec.version, "model": spec.model, "params": spec.params,
                "messages": messages}
    click.echo(_inert_stdout(json.dumps(document, indent=2, ensure_ascii=False), "json"))


_REF_OPTIONS = [
    click.option("--base", metavar="REF",
                 help="Compare from this ref (default: $GITHUB_BASE_REF in a pull-request job, "
                      "else the merge-base of HEAD with the default branch)."),
    click.option("--head", metavar="REF", help="Compare to this ref (default: the working tree)."),
    click.option("--staged", is_flag=True, help="Compare HEAD with the staged changes (what a commit hook sees)."),
]


def _ref_options(command: Any) -> Any:
    for option in reversed(_REF_OPTIONS):
        command = option(command)
    return command


def _snapshots(base: str | None, head: str | None, staged: bool) -> tuple[Any, Any, Any, Any]:
    """The project at base and at head, or exit 2 saying why they cannot be read."""
    from promptops.config import ConfigError
    from promptops.gitrefs import RefError, open_repo, resolve_refs, snapshot, staged_refs

    if staged and (base or head):
        raise click.UsageError("--staged compares HEAD with the index; it takes no --base or --head")
    try:
        if staged:
            repo, base_ref, head_ref = staged_refs(Path.cwd())
            return base_ref, head_ref, snapshot(repo, base_ref, Path.cwd()), snapshot(repo, head_ref, Path.cwd())
        with open_repo(Path.cwd()) as repo:  # closed: its git cat-file processes end with the command
            base_ref, head_ref = resolve_refs(repo, base, head)
            return base_ref, head_ref, snapshot(repo, base_ref, Path.cwd()), snapshot(repo, head_ref, Path.cwd())
    except (RefError, ConfigError) as exc:
        _fail(str(exc))


def _head_snapshot(head: str | None, staged: bool) -> tuple[Any, Any]:
    """The project at the head alone: the working tree needs no git at all."""
    from promptops.config import ConfigError, load_workspace
    from promptops.gitrefs import WORKING_TREE, Ref, RefError, open_repo, resolve_refs, snapshot, staged_refs

    try:
        if head is None and not staged:
            return Ref(WORKING_TREE, None), load_workspace(Path.cwd())
        if staged:
            repo, _, head_ref = staged_refs(Path.cwd())
            return head_ref, snapshot(repo, head_ref, Path.cwd())
        with open_repo(Path.cwd()) as repo:
            _, head_ref = resolve_refs(repo, head, head)
            return head_ref, snapshot(repo, head_ref, Path.cwd())
    except (RefError, ConfigError) as exc:
        _fail(str(exc))


@cli.command()
@_ref_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table",
              show_default=True, help="Report format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here.")
@click.option("--fail-on-increase", type=click.FloatRange(min=0), metavar="PCT",
              help="Exit 1 if the monthly total, or any prompt's cost per call, rises by more than PCT percent.")
@click.option("--warn", is_flag=True, help="Report budget breaches without failing (what the commit hook does).")
@click.option("--all", "show_all", is_flag=True,
              help="List unchanged prompts too (table and markdown; json always lists every prompt, with its status).")
@click.option("--color/--no-color", default=None, help="Colour the table (default: on a terminal).")
def cost(base: str | None, head: str | None, staged: bool, fmt: str, output: Path | None,
         fail_on_increase: float | None, warn: bool, show_all: bool, color: bool | None) -> None:
    """Tokens and cost per call and per month at two refs, and their deltas.

    Offline: tokens are counted with the model's tokenizer where one ships with
    the installed packages (an approximation, flagged, elsewhere) and prices
    come from litellm's price map and pricing: in promptops.yaml. The table
    lists the prompts whose figures changed, and counts the others in one
    line (--all lists them). Exit 1 when the head breaks a prompt's budget or
    --fail-on-increase; 2 when a ref or the config cannot be used.
    """
    from promptops.estimate.cost import compare
    from promptops.report import cost as renderers

    base_ref, head_ref, base_ws, head_ws = _snapshots(base, head, staged)
    report = compare(base_ws, head_ws, str(base_ref), str(head_ref))
    if fmt == "json":
        text = renderers.render_json(report)
    elif fmt == "markdown":
        text = renderers.render_markdown(report, show_all=show_all)
    else:
        use_color = color if color is not None else (sys.stdout.isatty() and output is None)
        text = renderers.render_table(report, color=bool(use_color), show_all=show_all)
    if output:
        _write_report(output, text)
    else:
        click.echo(_inert_stdout(text, fmt), nl=False)
    for problem in base_ws.problems + head_ws.problems:
        click.echo(f"note: not estimated: {problem}", err=True)
    failures = [] if warn else [str(f) for f in report.findings]
    if fail_on_increase is not None:
        failures += _increases(report, fail_on_increase)
    for failure in failures:
        click.echo(f"promptops cost: {failure}", err=True)
    if failures:
        sys.exit(EXIT_FINDINGS)


@cli.command()
@_ref_options
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="Report format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here.")
def diff(base: str | None, head: str | None, staged: bool, fmt: str, output: Path | None) -> None:
    """What changed in prompts and retrieval configs between two refs, field by field.

    Formatting-only edits read "no semantic change"; a re-index or a model
    family swap is called out. Exit 2 when a ref or the config cannot be used.
    """
    from promptops.diff import diff_workspaces
    from promptops.report import diff as renderers

    base_ref, head_ref, base_ws, head_ws = _snapshots(base, head, staged)
    changes = diff_workspaces(base_ws, head_ws)
    render = {"json": renderers.render_json, "markdown": renderers.render_markdown}.get(fmt, renderers.render_text)
    text = render(changes, str(base_ref), str(head_ref))
    if output:
        _write_report(output, text)
    else:
        click.echo(_inert_stdout(text, fmt), nl=False)


# How a run makes its model calls: shared by `eval` and `ci`.
_EVAL_RUN_OPTIONS = [
    click.option("--all", "run_all", is_flag=True, help="Run every suite, not only those the change touches."),
    click.option("--repeat", type=click.IntRange(1, 100), help="Run each case this many times (noise)."),
    click.option("--confirm", type=click.IntRange(0, 10),
                 help="Ask every case that flips between base and head, or whose samples disagree, this many more "
                      "times a side (default: eval.confirm in promptops.yaml, else 2; 0: off)."),
    click.option("--concurrency", type=click.IntRange(1, 256), help="Model calls in flight at once."),
    click.option("--max-cost", type=click.FloatRange(min=0), metavar="USD",
                 help="Stop before spending more than this on model calls."),
    click.option("--api-base", envvar="PROMPTOPS_API_BASE", metavar="URL",
                 help="An OpenAI-compatible server for every call (a local model, a gateway)."),
    click.option("--cache", "cache_file", type=click.Path(dir_okay=False, path_type=Path),
                 help="The result cache (default: eval.cache in promptops.yaml, else .promptops/cache.db)."),
    click.option("--workers", type=click.IntRange(0, 64),
                 help="Processes that make the model calls, on Linux (default: two per core when over 200 "
                      "calls need the model and the cores are idle; 0: this process only)."),
]


def _eval_run_options(command: Any) -> Any:
    for option in reversed(_EVAL_RUN_OPTIONS):
        command = option(command)
    return command


@cli.command("eval")
@_ref_options
@click.option("--no-base", is_flag=True, help="Run the head only, without comparing.")
@click.option("--suite", "suites", multiple=True, metavar="NAME",
              help="Run this suite (its file path, or the prompt id it tests); repeatable. Implies no impact selection.")
@_eval_run_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the results here.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Also write JUnit XML here.")
@click.option("--shard", metavar="I/N", callback=lambda ctx, param, value: _shard(value),
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

    from promptops.resultcache import CacheError
    from promptops.evals.execute import EvalOptions, run_evaluation
    from promptops.evals.runner import MissingCredentials
    from promptops.findings import Severity
    from promptops.report import evals as renderers
    from promptops.report.progress import Progress
    from promptops.report.safety import environment_redactor
    from promptops.specs import kind_of

    if no_base:
        head_ref, head_ws = _head_snapshot(head, staged)
        base_ref, base_ws = head_ref, head_ws
    else:
        base_ref, head_ref, base_ws, head_ws = _snapshots(base, head, staged)
    options = EvalOptions(compare=not no_base, suites=suites, run_all=run_all, repeat=repeat, confirm=confirm,
                          concurrency=concurrency, max_cost_usd=max_cost, api_base=api_base, shard=shard,
                          cache=cache_file, workers=workers, base_label=str(base_ref))
    # A SIGTERM (a CI job cancelled) stops the run as Ctrl-C does: calls in flight are cancelled, every
    # finished answer is already stored, worker processes are stopped; exit 130.
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    progress = Progress()
    try:
        comparisons, skipped = asyncio.run(run_evaluation(base_ws, head_ws, options, progress))
    except MissingCredentials as exc:
        _fail(f"evals not run: {exc}")
    except CacheError as exc:
        progress.close()
        _cache_failed(exc)
    except KeyboardInterrupt:  # click would call this "Aborted!" and exit 1, the code of a failed gate
        progress.close()
        click.echo("promptops: interrupted; every answer that arrived is in the cache, a re-run makes only the "
                   "calls left", err=True)
        sys.exit(130)
    finally:
        progress.close()
    unanswered = _mark_incomplete(comparisons)
    # A file that does not load is no suite run and no PASS: named with its line (lint says more).
    unloaded = [problem for problem in head_ws.problems if problem.severity is Severity.ERROR]
    skipped = [*skipped, *(f"not loaded: {problem}" for problem in unloaded)]
    base_label = None if no_base else str(base_ref)
    # Redacted before rendering (nothing escapes or cuts a secret first) and again as each text leaves.
    redact = environment_redactor()
    comparisons, skipped = redact.data(comparisons), redact.data(skipped)
    if fmt == "json":
        text = redact(renderers.render_json(comparisons, base_label, str(head_ref), skipped))
    else:
        text = redact(renderers.render_text(comparisons, skipped))
    try:
        if output:
            output.write_text(text, encoding="utf-8")
        else:
            click.echo(_inert_stdout(text, fmt), nl=False)
        if junit:
            junit.write_text(redact(renderers.render_junit(comparisons)), encoding="utf-8")
    except OSError as exc:  # every answer is in the cache: a re-run with a writable path makes no model call
        _fail(f"cannot write the results: {exc}")
    if unanswered:  # as in `promptops ci`: a run that could not ask the model has no verdict to give
        click.echo(f"promptops: {unanswered} model call(s) got no answer after retries, so the results are "
                   "incomplete; a re-run makes only the calls that are missing", err=True)
        sys.exit(EXIT_SERVICE)
    # A gate that fails on the base as well fails the run unless gates.preexisting says warn.
    tolerated = head_ws.config.section("gates").get("preexisting") == "warn"
    if any(not gate.passed and not (gate.preexisting and tolerated) for c in comparisons for _, gate in c.gates):
        sys.exit(EXIT_FINDINGS)
    if any(kind_of(problem.path) == "eval" for problem in unloaded):  # a suite that could not run
        sys.exit(EXIT_FINDINGS)


def _inert_stdout(text: str, fmt: str) -> str:
    """A report that quotes pull-request content (file names, YAML keys, templates, model answers),
    unable to start a workflow command when it is printed in an Actions log.

    JSON keeps its exact value: a "[" after "##" is written as the escape \\u005b. Lint's github
    format is workflow commands by design, its data already escaped.
    """
    from promptops.report.safety import inert_log

    if fmt == "github":
        return text
    return text.replace("##[", "##\\u005b") if fmt in ("json", "sarif") else inert_log(text)


def _cache_failed(exc: Exception) -> NoReturn:
    _fail(f"evals stopped: {exc}. An answer counts only once it is stored (one that is not would be paid for "
          "again), so the run stopped: free space or make the cache writable, or point --cache (eval.cache in "
          "promptops.yaml) at a file that can be written")


def _mark_incomplete(comparisons: list[Any]) -> int:
    """Fail the check `answered` of each suite with model calls, base or head, that got no answer after retries,
    and the check `within_spend_cap` of each suite whose calls the spend cap refused, so that no report of an
    incomplete run says PASS; return how many calls got no answer. A case whose prompt does not render was
    never sent: neither is a call that got no answer."""
    from promptops.evals.runner import Failure
    from promptops.evals.stats import GateResult

    total = 0
    for comparison in comparisons:
        attempts = [(change.case_id, attempt) for change in comparison.cases for run in (change.base, change.head)
                    if run is not None for attempt in run.attempts]
        unanswered = [f"{case_id}: {attempt.failures[0] if attempt.failures else 'no answer'}"
                      for case_id, attempt in attempts if attempt.failure is Failure.NO_ANSWER]
        capped = [case_id for case_id, attempt in attempts if attempt.failure is Failure.SPEND_CAP]
        if unanswered:
            comparison.gates.append(("answered", GateResult(
                False, f"{len(unanswered)} model call(s) got no answer after retries, e.g. {unanswered[0]}")))
        if capped:
            comparison.gates.append(("within_spend_cap", GateResult(
                False, f"the spend cap stopped {len(capped)} model call(s), e.g. for case {capped[0]}: the results "
                       "are incomplete (raise eval.max_cost_usd or --max-cost)")))
        total += len(unanswered)
    return total


def _shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    index, sep, count = value.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise click.BadParameter(f"{value!r} is not I/N with 1 <= I <= N", param_hint="--shard")
    return int(index), int(count)


@cli.command()
@click.argument("caches", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--into", type=click.Path(dir_okay=False, path_type=Path),
              help="The cache to merge into (default: eval.cache in promptops.yaml, else .promptops/cache.db).")
def merge(caches: tuple[Path, ...], into: Path | None) -> None:
    """Join the result caches of sharded eval jobs, so that one `promptops eval` compares and reports
    everything from the cache, without a model call."""
    import sqlite3

    from promptops.config import ConfigError, load_workspace
    from promptops.resultcache import CacheError, ResultCache, cache_path

    if into is None:
        try:
            config = load_workspace(Path.cwd()).config
        except ConfigError as exc:
            _fail(str(exc))
        into = cache_path(config.root, config.section("eval").get("cache"))
    try:
        target = ResultCache(into)
    except CacheError as exc:
        _fail(str(exc))
    with target:
        for cache in caches:
            try:
                added = target.merge_from(cache)
            except sqlite3.DatabaseError as exc:
                _fail(f"{cache} is not a promptops result cache ({exc})")
            click.echo(f"{cache}: {added} new result(s) into {into}")


@cli.command()
@click.option("--base", metavar="REF",
              help="Compare from this ref (default: the merge-base with the pull request's base branch).")
@click.option("--eval/--no-eval", "run_evals", default=True, show_default=True,
              help="Run the eval suites the change touches (lint, cost and diff always run).")
@click.option("--comment/--no-comment", default=True, show_default=True,
              help="Post or update the sticky PR comment (inside a pull-request job, with a token).")
@click.option("--fail-on", type=click.Choice(["error", "regression", "never"]), default="error", show_default=True,
              help="error: any failure fails the check; regression: only failed eval gates; never: report only.")
@_eval_run_options
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".promptops/report"),
              show_default=True, help="Where report.md, report.html and report.json are written.")
@click.option("--sarif", type=click.Path(dir_okay=False, path_type=Path), help="Also write lint findings as SARIF here.")
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
    from promptops.config import ConfigError
    from promptops.resultcache import CacheError
    from promptops.evals.execute import EvalOptions
    from promptops.gitrefs import RefError
    from promptops.github import GitHubInputError
    from promptops.publish import Publisher
    from promptops.report.progress import Progress

    try:
        publisher = Publisher.from_environment(report_dir, comment=comment, sarif=sarif)
    except GitHubInputError as exc:
        _fail(str(exc))
    try:
        report_dir.mkdir(parents=True, exist_ok=True)  # before any model call is paid for
    except OSError as exc:
        _fail(f"cannot write the report to {report_dir}: {exc.strerror or exc}; pass --report-dir with a folder "
              "that can be written")
    eval_options = EvalOptions(run_all=run_all, repeat=repeat, confirm=confirm, concurrency=concurrency,
                               max_cost_usd=max_cost, api_base=api_base, cache=cache_file, workers=workers)
    options = _check_options(base, run_evals, fail_on, eval_options, publisher.context)
    progress = Progress()
    try:
        report = run_check(Path.cwd(), options, progress)
    except (RefError, ConfigError) as exc:
        _fail(str(exc))
    except CacheError as exc:
        progress.close()
        _cache_failed(exc)
    finally:
        progress.close()
    try:
        code = publisher.publish(report)
    except OSError as exc:
        _fail(f"cannot write the report: {exc}")
    sys.exit(code)


@cli.command()
@click.argument("directory", required=False, default="promptops-demo", type=click.Path(file_okay=False, path_type=Path))
def demo(directory: Path) -> None:
    """The whole PR check, offline, on a two-commit copy of the bundled example (default: ./promptops-demo).

    Builds a git repository whose branch edits one prompt, then runs
    `promptops ci` on it against the embedded default model (deterministic,
    no API key, no network). The repository is DIRECTORY/repo, the report
    DIRECTORY/report.
    Exit 0 once the report is written, whatever its verdict.
    """
    from promptops.demo import DemoError, build_repository, run_check

    try:
        repository = build_repository(directory)
    except DemoError as exc:
        _fail(str(exc))
    click.echo(f"demo repository: {repository} (main, and the branch with one prompt edit)\n")
    code = run_check(repository, directory.resolve() / "report")
    if code not in (EXIT_OK, EXIT_FINDINGS):
        _fail(f"the check stopped with exit code {code}")
    click.echo(f"\nOpen {directory / 'report' / 'report.html'} (or report.md) to read the full report.")


def _check_options(base: str | None, run_evals: bool, fail_on: str, eval_options: Any, context: Any) -> Any:
    from promptops.ci import CheckOptions

    pull_request = context.pull_request if context else None
    return CheckOptions(base=base, evals=run_evals, eval_options=eval_options, fail_on=fail_on,
                        from_fork=bool(pull_request and pull_request.is_fork))
# --- environments: promote, rollback, status, history, export ---------------------------------------

@cli.command()
@click.argument("prompt_id")
@click.option("--to", "environment", required=True, metavar="ENV", help="The environment to promote to.")
@click.option("--ref", metavar="REF",
              help="The commit to promote from (default: HEAD for the first environment, else the commit of the "
                   "version the environment before it holds).")
@click.option("--force", is_flag=True, help="Promote despite a failed gate, missing evidence or the order (needs --reason).")
@click.option("--reason", metavar="TEXT", help="Why; recorded in the lock and the audit log.")
@click.option("--commit", "make_commit", is_flag=True, help="Commit exactly the files the promotion wrote.")
@click.option("--api-base", envvar="PROMPTOPS_API_BASE", metavar="URL",
              help="An OpenAI-compatible server for eval calls the cache cannot answer.")
def promote(prompt_id: str, environment: str, ref: str | None, force: bool, reason: str | None,
            make_commit: bool, api_base: str | None) -> None:
    """Move PROMPT_ID's version at a commit into ENV, with evidence that it passed its suites' gates.

    Environments follow the order in promptops.yaml (default dev, staging,
    prod): each receives only what the one before it holds. Evidence comes from
    the eval cache, else the suites run. Writes promptops.lock.yaml, the release
    snapshot in .promptops/releases/ and a line in .promptops/audit.log. Exit 1
    when a gate failed or there is no evidence, 2 for a wrong id, environment,
    order, a dirty prompt or a broken lock, 3 when model calls failed.
    """
    from promptops.release.promote import Request, promote as run_promote
    from promptops.report.progress import Progress

    request = Request(prompt_id, environment, ref, force, reason, make_commit, api_base)
    progress = Progress()
    with _release_errors():
        try:
            outcome = run_promote(Path.cwd(), request, progress)
        finally:
            progress.close()
    _report_release(outcome)


@cli.command()
@click.argument("prompt_id")
@click.option("--env", "environment", required=True, metavar="ENV", help="The environment to roll back.")
@click.option("--to", "version", metavar="VERSION", help="A version ENV held before (default: the one just before).")
@click.option("--reason", metavar="TEXT", help="Why; recorded in the lock and the audit log.")
@click.option("--commit", "make_commit", is_flag=True, help="Commit exactly the files the rollback wrote.")
def rollback(prompt_id: str, environment: str, version: str | None, reason: str | None, make_commit: bool) -> None:
    """Move ENV back to the version of PROMPT_ID it held before, in one step (no evals, no git needed)."""
    from promptops.release.promote import rollback as run_rollback

    with _release_errors():
        outcome = run_rollback(Path.cwd(), prompt_id, environment, version, reason, make_commit)
    _report_release(outcome)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(fmt: str) -> None:
    """Which version of each prompt every environment holds, marking those behind the working tree's
    version, those whose prompt is gone, and those whose release snapshot is missing or altered.

    Exit 1 when a release snapshot the lock names is missing or altered (as lint's PO131), 2 when the
    lock or the config cannot be used.
    """
    from promptops.release.promote import Project
    from promptops.release.status import (environment_order, render_json, render_text, snapshot_problems,
                                          status as rows_of)

    with _release_errors():
        project = Project.open(Path.cwd())
    rows = rows_of(project.workspace, project.lock)
    environments = environment_order(project.workspace, project.lock)
    problems = snapshot_problems(project.lock)
    click.echo((render_json if fmt == "json" else render_text)(rows, environments, problems), nl=False)
    if problems:
        sys.exit(EXIT_FINDINGS)


@cli.command()
@click.argument("prompt_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def history(prompt_id: str, fmt: str) -> None:
    """Every promotion and rollback of PROMPT_ID, oldest first, from .promptops/audit.log."""
    import json

    from promptops import lockfile
    from promptops.release.promote import Project
    from promptops.release.status import history as history_of, render_history

    with _release_errors():
        project = Project.open(Path.cwd())
        records = history_of(lockfile.read_audit(project.root / lockfile.AUDIT_LOG, lockfile.AUDIT_LOG), prompt_id)
    if not records and prompt_id not in project.workspace.prompts:
        _fail(f"no prompt has id '{prompt_id}' and the audit log has no record of it")
    if fmt == "json":
        click.echo(json.dumps(records, indent=2, sort_keys=True))
    elif records:
        click.echo(render_history(records), nl=False)
    else:
        click.echo(f"'{prompt_id}' has no record in {lockfile.AUDIT_LOG}")


@cli.command()
@click.option("--env", "environment", required=True, metavar="ENV", help="The environment to bundle.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export(environment: str, directory: Path) -> None:
    """Write a self-contained bundle of what ENV holds into DIRECTORY, for apps that load prompts with
    promptops.load(..., bundle=DIRECTORY) or $PROMPTOPS_BUNDLE (no git, no spec files needed)."""
    from promptops.release.promote import Project
    from promptops.release.runtime import LoadError, export as run_export

    with _release_errors():
        project = Project.open(Path.cwd())
        try:
            exported = run_export(project.lock, environment, directory)
        except (LoadError, OSError) as exc:
            _fail(f"nothing exported: {exc}")
    click.echo(f"exported {len(exported)} prompt(s) of {environment} to {directory}")


@contextlib.contextmanager
def _release_errors() -> Iterator[None]:
    """ReleaseError and LockError as their message and exit code, never a traceback."""
    from promptops.release.promote import ReleaseError
    from promptops.lockfile import LockError

    try:
        yield
    except ReleaseError as exc:
        click.echo(f"promptops: {exc}", err=True)
        sys.exit(exc.exit_code)
    except LockError as exc:
        _fail(str(exc))


def _report_release(outcome: Any) -> None:
    if outcome.action == "unchanged":
        click.echo(f"{outcome.environment} already holds '{outcome.prompt_id}' {outcome.version}; nothing to do")
        for note in outcome.notes:  # an audit line a stopped run left out, appended now
            click.echo(f"  note: {note}", err=True)
        return
    verb = "rolled back" if outcome.action == "rollback" else "promoted"
    was = f" (was {outcome.previous})" if outcome.previous else " (first version there)"
    click.echo(f"{verb} '{outcome.prompt_id}' {outcome.version} in {outcome.environment}{was}")
    evidence = outcome.evidence
    if evidence:
        cost = "unknown" if evidence["cost_per_call_usd"] is None else f"${evidence['cost_per_call_usd']:.6f}"
        p95 = ("not measured (answers from the cache)" if evidence["latency_p95_ms"] is None
               else f"{evidence['latency_p95_ms']:.0f} ms")
        label = "evidence when first promoted" if outcome.action == "rollback" else "evidence"
        click.echo(f"  {label}: {len(evidence['suites'])} suite(s), {evidence['cases']} case(s), pass rate "
                   f"{evidence['pass_rate']:.0%}, {cost} per call, p95 {p95}, {evidence['model_calls']} new model call(s)")
    for problem in outcome.overridden:
        click.echo(f"  FORCED past: {problem}")
    for note in outcome.notes:
        click.echo(f"  note: {note}", err=True)
    for path in outcome.written:
        click.echo(f"  wrote {os.path.relpath(path)}")
    if outcome.committed:
        click.echo(f"  committed {outcome.committed[:12]}")


def _increases(report: Any, limit: float) -> list[str]:
    """Rises beyond ``limit`` percent: the monthly total, or a prompt's cost per call."""
    rises = []
    total = report.monthly_delta
    if total.percent is not None and total.percent > limit:
        rises.append(f"monthly cost rises {total.percent:.1f}%, more than --fail-on-increase {limit:g}%")
    for change in report.changes:
        per_call = change.delta("cost_per_call")
        if change.status == "changed" and per_call.percent is not None and per_call.percent > limit:
            rises.append(f"'{change.prompt_id}' cost per call rises {per_call.percent:.1f}%, "
                         f"more than --fail-on-increase {limit:g}%")
    return rises


def _var_value(text: str) -> object:
    """A --var value: what it means as JSON (a list, a number, an object, true, false, null), else the text itself,
    so that --var city=Paris needs no quotes. NaN and Infinity are not JSON and stay text."""
    import json

    def not_json(constant: str) -> object:
        raise ValueError(constant)

    try:
        return json.loads(text, parse_constant=not_json)
    except (ValueError, RecursionError):
        return text


def _read_vars(path: Path) -> dict[str, object]:
    """Variables from a JSON or YAML file, through the same safe reader as every spec."""
    from promptops.loader import read_text
    from promptops.yamlparse import YamlError, parse

    text, problem = read_text(path, path.parent, str(path))
    if problem:
        _fail(str(problem))
    try:
        data, _ = parse(text or "")  # JSON is YAML
    except YamlError as exc:
        _fail(f"{path}:{exc.line}:{exc.col}: {exc.message}")
    if not isinstance(data, dict):
        _fail(f"{path}: the variables must be a mapping of names to values")
    return data


def _write_report(output: Path, text: str) -> None:
    """--output: a path that cannot be written is a usage error (2) that names it, not a traceback."""
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}")


def _fail(message: str) -> NoReturn:
    from promptops.report.safety import inert_log

    click.echo(f"promptops: {inert_log(message)}", err=True)  # a message may quote a file name or a YAML key
    sys.exit(EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one promptops command (``argv`` without the program name; default: ``sys.argv[1:]``) and return
    its exit code, never exiting: the console script and ``python -m promptops`` exit with it, tests call it
    in-process."""
    try:
        cli.main(args=None if argv is None else list(argv), prog_name="promptops")
    except SystemExit as stop:
        return _exit_code(stop.code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return EXIT_OK


def _exit_code(code: object) -> int:
    """What the interpreter would exit with for ``sys.exit(code)``: a message is printed and is 1."""
    if code is None or isinstance(code, int):
        return code or EXIT_OK
    click.echo(code, err=True)
    return 1
