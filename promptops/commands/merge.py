"""`promptops merge`: join the result caches of sharded eval jobs."""

from __future__ import annotations

from pathlib import Path

import click

from promptops.errors import UsageError


@click.command()
@click.argument("caches", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--into", type=click.Path(dir_okay=False, path_type=Path),
              help="The cache to merge into (default: eval.cache in promptops.yaml, else .promptops/cache.db).")
def merge(caches: tuple[Path, ...], into: Path | None) -> None:
    """Join the result caches of sharded eval jobs, so that one `promptops eval` compares and reports
    everything from the cache, without a model call."""
    import sqlite3

    from promptops.config import load_workspace
    from promptops.resultcache import ResultCache, cache_path

    if into is None:
        config = load_workspace(Path.cwd()).config
        into = cache_path(config.root, config.eval.cache)
    with ResultCache(into) as target:
        for cache in caches:
            try:
                added = target.merge_from(cache)
            except sqlite3.DatabaseError as exc:
                raise UsageError(f"{cache} is not a promptops result cache ({exc})") from exc
            click.echo(f"{cache}: {added} new result(s) into {into}")
