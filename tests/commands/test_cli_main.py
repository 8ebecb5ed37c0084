"""The one entry point, ``promptops.cli.main(argv) -> int``, and the in-process runner the tests use."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.cli import run_promptops, run_promptops_process
from promptops.cli import main


def test_main_returns_the_exit_code_instead_of_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "--explain", "PO999"]) == 2
    assert "no rule 'PO999'" in capsys.readouterr().err
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("promptops, version ")


def test_main_reads_sys_argv_without_arguments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["promptops", "lint", str(tmp_path / "missing.prompt.yaml")])
    assert main() == 2


def test_python_m_promptops_and_the_console_script_exit_with_mains_code(tmp_path: Path) -> None:
    assert run_promptops_process(["lint", "missing.prompt.yaml"], cwd=tmp_path).returncode == 2
    script = shutil.which("promptops", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("no promptops console script next to this interpreter (not installed with pip)")
    done = subprocess.run([script, "lint", "missing.prompt.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr


BROKEN = """\
id: broken
model: {name: openai/gpt-4o-mini}
inputs: {type: object, properties: {name: {type: string}}}
messages:
  - {role: user, content: "Say hello to {{ name }} from {{ company }}."}
"""


def test_an_in_process_run_has_its_own_folder_environment_and_streams(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "promptops.yaml").write_text("defaults: {model: openai/gpt-4o-mini}\n")
    (tmp_path / "broken.prompt.yaml").write_text(BROKEN)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")  # lint's default format: github here, text for the command below
    before = (os.getcwd(), dict(os.environ), signal.getsignal(signal.SIGTERM))
    text = run_promptops(["lint"], cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    assert text.returncode == 1 and "broken.prompt.yaml:5:" in text.stdout and "::error" not in text.stdout
    github = run_promptops(["lint"], cwd=tmp_path)  # this process's environment
    assert github.returncode == 1 and "::error file=broken.prompt.yaml,line=5" in github.stdout
    assert run_promptops(["eval", "--no-base"], cwd=tmp_path).returncode == 0  # sets a SIGTERM handler
    assert (os.getcwd(), dict(os.environ), signal.getsignal(signal.SIGTERM)) == before
