"""The lock file's format: entries read once into typed releases, written back byte for byte; the audit log's
reader names the line it cannot read."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from promptops import lockfile

SHA_A, SHA_B = "a" * 40, "b" * 40
EVIDENCE = """\
      evidence:
        suites:
        - name: geo_capital.eval.yaml
          pass_rate: 1.0
          cases: 8
          passed: true
          failed_gates: []
        pass_rate: 1.0
        cases: 8
        cost_per_call_usd: 3.675e-06
        latency_p95_ms: null
        model_calls: 0
        passed: true
"""
# As promptops writes it: a rollback holding a forced promotion in its history, a promotion with no history yet,
# and a forced promotion without evidence.
LOCK = lockfile.HEADER + f"""\
schema_version: 1
environments:
  dev:
    geo.capital:
      version: 7e861e7378a8
      commit: {SHA_A}
      source: geo_capital.prompt.yaml
      promoted_at: '2026-12-03T09:07:19Z'
      promoted_by: t <t@x.invalid>
      action: rollback
      forced: false
      reason: too long
{EVIDENCE}      history:
      - version: 1ae4c7ae2736
        commit: {SHA_B}
        source: geo_capital.prompt.yaml
        promoted_at: '2026-12-03T09:07:05Z'
        promoted_by: t <t@x.invalid>
        action: promote
        forced: true
        reason: incident 42
        evidence: null
        overridden:
        - 'no evidence: its suites could not be run'
  staging:
    geo.capital:
      version: 7e861e7378a8
      commit: {SHA_A}
      source: geo_capital.prompt.yaml
      promoted_at: '2026-12-03T09:07:06Z'
      promoted_by: release-tester
      action: promote
      forced: false
      reason: null
{EVIDENCE}      history: []
  prod: {{}}
"""


def test_a_lock_is_read_into_releases_and_written_back_unchanged(tmp_path: Path) -> None:
    path = tmp_path / lockfile.LOCK_NAME
    path.write_text(LOCK, encoding="utf-8")
    lock = lockfile.read_lock(path)
    dev = lock.entry("dev", "geo.capital")
    assert dev is not None and (dev.version, dev.action, dev.reason, dev.forced) == ("7e861e7378a8", "rollback",
                                                                                      "too long", False)
    assert dev.evidence is not None and dev.evidence["cases"] == 8
    (older,) = dev.history
    assert (older.forced, older.evidence, older.overridden, older.history) == (
        True, None, ("no evidence: its suites could not be run",), ())
    assert lock.entry("prod", "geo.capital") is None and lock.releases_dir == tmp_path / lockfile.RELEASES
    assert lock.text() == LOCK


def test_a_bundle_lock_names_its_releases_folder_and_keeps_no_history(tmp_path: Path) -> None:
    path = tmp_path / lockfile.LOCK_NAME
    path.write_text(LOCK, encoding="utf-8")
    lock = lockfile.read_lock(path)
    bundle = lockfile.dump_lock({"dev": lock.environments["dev"]}, releases="releases", history=False)
    assert bundle.startswith(lockfile.HEADER + "schema_version: 1\nreleases: releases\nenvironments:\n  dev:\n")
    assert "history" not in bundle and "1ae4c7ae2736" not in bundle
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / lockfile.LOCK_NAME).write_text(bundle, encoding="utf-8")
    reread = lockfile.read_lock(tmp_path / "bundle" / lockfile.LOCK_NAME)
    assert reread.releases_dir == tmp_path / "bundle" / "releases"
    dev = lock.entry("dev", "geo.capital")
    assert dev is not None and reread.entry("dev", "geo.capital") == dev.without_history()


@pytest.mark.parametrize("line, reason", [
    ("{not json", "Expecting property name enclosed in double quotes"),
    pytest.param("1" * 5000, "Exceeds the limit (4300 digits) for integer string conversion",  # no .msg
                 marks=pytest.mark.skipif(not hasattr(sys, "get_int_max_str_digits"), reason="no limit before 3.10.7")),
])
def test_an_audit_line_that_is_not_json_is_named_by_its_line(tmp_path: Path, line: str, reason: str) -> None:
    log = tmp_path / "audit.log"
    log.write_text('{"prompt": "geo.capital"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(lockfile.LockError) as raised:
        lockfile.read_audit(log, ".promptops/audit.log")
    assert str(raised.value).startswith(f".promptops/audit.log:2: not a JSON line ({reason}")
    assert str(raised.value).endswith("); the audit log is written only by promptops")
