"""Fixtures for every test: the leak check (autouse), and a fresh copy of the checkout.

Shared helpers live in tests/helpers/ (importable as ``helpers.*`` from every test folder); the tests that
build, install or hook up promptops work on a copy of the checkout (helpers.repo.copy_source).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# Autouse: every test, and every module, stops what it started.
from helpers.leaks import nothing_left_running, nothing_left_running_by_the_module  # noqa: F401
from helpers.repo import copy_source


@pytest.fixture(scope="session")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Path]:
    """Makes a fresh copy of the checkout in a temporary folder each time it is called."""
    return lambda: copy_source(tmp_path_factory.mktemp("source"))
