"""Options that several commands share: which refs to compare, and how an eval run makes its model calls."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def _all_of(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def decorate(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


ref_options = _all_of([
    click.option("--base", metavar="REF",
                 help="Compare from this ref (default: $GITHUB_BASE_REF in a pull-request job, "
                      "else the merge-base of HEAD with the default branch)."),
    click.option("--head", metavar="REF", help="Compare to this ref (default: the working tree)."),
    click.option("--staged", is_flag=True, help="Compare HEAD with the staged changes (what a commit hook sees)."),
])

# How a run makes its model calls: shared by `eval` and `ci`.
eval_run_options = _all_of([
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
])


def color_option(help: str) -> Callable[[F], F]:
    return click.option("--color/--no-color", default=None, help=help)
