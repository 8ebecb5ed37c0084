"""`promptops demo`: the whole PR check, offline, on a git copy of the bundled example with a branch to review."""

from __future__ import annotations

from pathlib import Path

import click

from promptops.errors import ExitCode, UsageError


@click.command()
@click.argument("directory", required=False, default="promptops-demo", type=click.Path(file_okay=False, path_type=Path))
def demo(directory: Path) -> None:
    """The whole PR check, offline, on a copy of the bundled example with a branch to review (default: promptops-demo).

    Builds a git repository whose branch edits one prompt and cuts the
    passages its retrieval config gives it, then runs `promptops ci` on it
    against the embedded default model (deterministic, no API key, no
    network). The repository is DIRECTORY/repo, the report DIRECTORY/report.
    Exit 0 once the report is written, whatever its verdict.
    """
    from promptops.demo import build_repository, run_ci_on_demo

    repository = build_repository(directory)
    click.echo(f"demo repository: {repository} (main, and a branch with a prompt edit and a retrieval cut)\n")
    code = run_ci_on_demo(repository, directory.resolve() / "report")
    if code not in (ExitCode.OK, ExitCode.FINDINGS):
        raise UsageError(f"the check stopped with exit code {code}")
    click.echo(f"\nOpen {directory / 'report' / 'report.html'} (or report.md) to read the full report.")
