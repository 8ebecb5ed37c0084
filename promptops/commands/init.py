"""`promptops init`: scaffold a promptops project."""

from __future__ import annotations

import shlex
from pathlib import Path

import click


@click.command()
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
    from promptops.scaffold import scaffold

    result = scaffold(directory, force=force, repo_root=_nearest_git_root(directory))
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
