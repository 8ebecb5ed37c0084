"""Golden reports: four canonical checks rendered every way a user reads them, compared byte for byte
with the reviewed files under tests/golden/, so that a change of layout or wording shows in the diff.

Regenerate after an intended change, then review the diff of tests/golden/ like code:
``PROMPTOPS_UPDATE_GOLDEN=1 python -m pytest -q tests/report/test_golden_reports.py``.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from helpers.golden import CASES, GOLDEN, UPDATE, Case, build_repository, normalised, render_all, run_case, stub_rules
from promptops.testing import StubServer


@pytest.fixture(scope="module")
def stub():
    with StubServer(rules=stub_rules(), default_reply="hello") as server:
        yield server


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_reports_of_a_canonical_check_match_their_golden_files(case: Case, stub: StubServer,
                                                                   tmp_path: Path) -> None:
    root = build_repository(tmp_path / "repo", case)
    rendered = {name: normalised(name, text, root) for name, text in render_all(run_case(root, stub)).items()}
    folder = GOLDEN / case.name
    if UPDATE:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in rendered.items():
            (folder / name).write_text(text, encoding="utf-8", newline="")
    stale = sorted(path.name for path in folder.iterdir() if path.name not in rendered) if folder.is_dir() else []
    assert not stale, f"{folder}: golden files no renderer writes any more: {stale}"
    for name, text in rendered.items():
        golden = folder / name
        assert golden.is_file(), f"{golden} is missing: PROMPTOPS_UPDATE_GOLDEN=1 writes it (then review it)"
        expected = golden.read_bytes().decode("utf-8")  # byte for byte: no newline translation
        if text != expected:
            diff = difflib.unified_diff(expected.splitlines(), text.splitlines(), str(golden), "rendered now",
                                        lineterm="")
            pytest.fail(f"{golden} differs from what the renderers write now; if the change is intended, rerun "
                        "with PROMPTOPS_UPDATE_GOLDEN=1 and review the diff:\n" + "\n".join(list(diff)[:60]))
