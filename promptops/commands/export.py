"""`promptops export`: a self-contained bundle of what an environment holds."""

from __future__ import annotations

from pathlib import Path

import click

from promptops.errors import UsageError


@click.command()
@click.option("--env", "environment", required=True, metavar="ENV", help="The environment to bundle.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export(environment: str, directory: Path) -> None:
    """Write a self-contained bundle of what ENV holds into DIRECTORY, for apps that load prompts with
    promptops.load(..., bundle=DIRECTORY) or $PROMPTOPS_BUNDLE (no git, no spec files needed)."""
    from promptops.release.promote import ReleaseProject
    from promptops.release.runtime import LoadError, export as run_export

    project = ReleaseProject.open(Path.cwd())
    try:
        exported = run_export(project.lock, environment, directory)
    except (LoadError, OSError) as exc:
        raise UsageError(f"nothing exported: {exc}") from exc
    click.echo(f"exported {len(exported)} prompt(s) of {environment} to {directory}")
