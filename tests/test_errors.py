"""One error path: exit codes named once (``promptops.errors.ExitCode``), every error a stage raises a
``PromptopsError`` carrying its code, and one handler that prints its message, never a traceback."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import click
import pytest

import promptops
import promptops.commands
from helpers.cli import run_promptops
from promptops.cli import cli
from promptops.config import ConfigError
from promptops.demo import DemoError
from promptops.errors import ExitCode, PromptopsError
from promptops.evals.runner import MissingCredentials
from promptops.github import GitHubError, GitHubInputError
from promptops.gitrefs import RefError
from promptops.lockfile import LockError
from promptops.release.promote import ReleaseError
from promptops.resultcache import CacheError
from promptops.scaffold import ScaffoldError

PACKAGE = Path(promptops.__file__).parent


@pytest.mark.parametrize(("error", "code"), [
    (ConfigError([]), ExitCode.USAGE), (RefError("x"), ExitCode.USAGE), (CacheError("x"), ExitCode.USAGE),
    (LockError("x"), ExitCode.USAGE), (ScaffoldError("x"), ExitCode.USAGE), (DemoError("x"), ExitCode.USAGE),
    (MissingCredentials("x"), ExitCode.USAGE), (GitHubInputError("x"), ExitCode.USAGE),
    (GitHubError("x"), ExitCode.SERVICE), (ReleaseError("x"), ExitCode.USAGE),
    (ReleaseError("x", ExitCode.REFUSED), ExitCode.REFUSED), (ReleaseError("x", ExitCode.SERVICE), ExitCode.SERVICE),
])
def test_every_error_a_stage_raises_carries_its_exit_code(error: Exception, code: ExitCode) -> None:
    assert isinstance(error, PromptopsError) and error.exit_code is code


def test_the_exit_codes_are_readmes() -> None:
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    documented = {int(line.split("|")[1]) for line in table.splitlines()
                  if line.startswith("| ") and "code" not in line}
    assert documented == {ExitCode.OK, ExitCode.FINDINGS, ExitCode.USAGE, ExitCode.SERVICE}
    assert str(ExitCode.USAGE) == "2" and f"{ExitCode.SERVICE}" == "3"  # printed as the number on every Python


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(PACKAGE.rglob("*.py"))]


def test_exit_codes_are_defined_in_one_place() -> None:
    """No module but errors.py names an exit code, and no command exits with a bare number."""
    defined, bare = [], []
    for path, tree in _modules():
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            defined += [f"{path.name}: {name}" for name in names if name.startswith("EXIT_")]
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("sys.exit", "ctx.exit"):
                bare += [f"{path.name}:{node.lineno}" for arg in node.args if isinstance(arg, ast.Constant)]
    assert defined == []
    assert [place for place in bare if not place.startswith("__main__.py")] == []


def test_every_command_module_is_a_command_of_the_group() -> None:
    registered = set(cli.commands.values())
    found = 0
    for module in pkgutil.iter_modules(promptops.commands.__path__):
        loaded = __import__(f"promptops.commands.{module.name}", fromlist=["_"])
        commands = [value for value in vars(loaded).values()
                    if isinstance(value, click.Command)
                    and getattr(value.callback, "__module__", "") == loaded.__name__]
        assert all(command in registered for command in commands), module.name
        found += len(commands)
    assert found == len(registered) == 14


def test_a_stage_error_is_its_programs_message_and_its_exit_code_never_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "prompts").write_text("a file where the scaffold needs a folder\n")
    done = run_promptops(["init"], cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("promptops init: prompts is a file, but prompts/example.prompt.yaml needs it to be a "
                           "folder; move it away\n")
    done = run_promptops(["history", "nope"], cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "promptops: no prompt has id 'nope' and the audit log has no "
                                                 "record of it\n")


def test_a_message_quoting_a_workflow_command_cannot_start_one(tmp_path: Path) -> None:
    done = run_promptops(["render", "x\n::stop-commands::token"], cwd=tmp_path)
    assert done.returncode == 2
    assert "\n::stop-commands" not in done.stderr and "stop-commands" in done.stderr


@pytest.mark.parametrize(("verdict_code", "fail_on", "posted", "code"), [
    (ExitCode.OK, "error", True, ExitCode.OK),
    (ExitCode.OK, "error", False, ExitCode.SERVICE),  # a passing check whose comment was lost is no pass
    (ExitCode.FINDINGS, "error", False, ExitCode.FINDINGS),  # a failing one keeps its own code
    (ExitCode.OK, "never", False, ExitCode.OK),  # report only, whatever GitHub did
])
def test_the_check_exits_with_its_verdicts_code_unless_its_comment_was_lost(
        verdict_code: ExitCode, fail_on: str, posted: bool, code: ExitCode) -> None:
    from promptops.model.check import CheckVerdict
    from promptops.publish import exit_code

    assert exit_code(CheckVerdict("pass", (), (), verdict_code, fail_on), posted) is code
