"""Environments end to end: promote, rollback, status, history, export and promptops.load, on real git
repositories, with evidence from real evals through litellm against the stub server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from helpers.geo import PROMPT, SUITE, stub
from helpers.release import (
    BETTER,
    GOOD,
    RUDE,
    audit_of,
    commit,
    configure,
    lock_of,
    new_repo,
    po,
    promote,
    shared_cache,
    version_of,
    write_prompt,
)
from helpers.repo import git
from promptops import lockfile, resources
from promptops.specs import content_version
from promptops.testing import StubServer

__all__ = ["shared_cache", "stub"]  # module-scoped fixtures from tests/helpers


@pytest.fixture
def repo(tmp_path: Path, shared_cache: Path) -> Path:
    return new_repo(tmp_path / "repo", shared_cache)


def test_a_version_moves_dev_staging_prod_with_evidence_recorded(repo: Path, stub: StubServer) -> None:
    write_prompt(repo, "geo.capital", "Answer with the city, nothing else.")  # a text no other test caches
    head = commit(repo, "chain")
    version = version_of(repo, "geo.capital")
    promote(repo, stub, "geo.capital", "dev")
    calls = stub.calls
    # Staging and prod take what the environment before holds, with evidence from the cache: no key, no call.
    promote(repo, None, "geo.capital", "staging")
    done = promote(repo, None, "geo.capital", "prod")
    assert stub.calls == calls and "0 new model call(s)" in done.stdout
    lock = lock_of(repo)
    for env in ("dev", "staging", "prod"):
        entry = lock["environments"][env]["geo.capital"]
        assert entry["version"] == version and entry["commit"] == head and entry["source"] == "geo_capital.prompt.yaml"
        assert entry["promoted_by"] == "release-tester" and entry["promoted_at"].endswith("Z")
        evidence = entry["evidence"]
        assert evidence["passed"] and evidence["pass_rate"] == 1.0 and evidence["cases"] == 8
        assert evidence["suites"] == [{"name": "geo_capital.eval.yaml", "pass_rate": 1.0, "cases": 8, "passed": True,
                                       "failed_gates": []}]
        assert evidence["cost_per_call_usd"] > 0
        # Latency is timed only on fresh calls: dev's evidence made them, the later ones read the cache.
        assert (evidence["latency_p95_ms"] > 0) if env == "dev" else (evidence["latency_p95_ms"] is None)
    assert lock["environments"]["dev"]["geo.capital"]["evidence"]["model_calls"] == 8
    assert "p95 not measured (answers from the cache)" in done.stdout
    umask = os.umask(0o022)
    os.umask(umask)
    assert (repo / lockfile.LOCK_NAME).stat().st_mode & 0o777 == 0o666 & ~umask  # not a temporary file's 0600
    snapshot = json.loads((repo / lockfile.RELEASES / "geo.capital" / f"{version}.json").read_text())
    Draft202012Validator(resources.schema("release")).validate(snapshot)
    assert content_version(snapshot["spec"]) == version and snapshot["commit"] == head
    assert [(r["environment"], r["action"], r["version"], r["previous"]) for r in audit_of(repo)] == [
        ("dev", "promote", version, None), ("staging", "promote", version, None), ("prod", "promote", version, None)]
    again = promote(repo, None, "geo.capital", "prod")
    assert "already holds" in again.stdout and len(audit_of(repo)) == 3


def test_order_is_enforced(repo: Path, stub: StubServer) -> None:
    done = promote(repo, stub, "geo.capital", "prod", expect=2)
    assert "prod only receives what staging holds" in done.stderr and "promote it to staging first" in done.stderr
    assert not (repo / lockfile.LOCK_NAME).exists()
    promote(repo, stub, "geo.capital", "dev")
    write_prompt(repo, "geo.capital", BETTER)
    newer = commit(repo, "better")
    done = promote(repo, stub, "geo.capital", "staging", "--ref", newer, expect=2)
    assert "dev holds" in done.stderr and "staging" not in lock_of(repo)["environments"]
    promote(repo, None, "geo.capital", "staging")  # by default, what dev holds, from the commit it came from
    dev, staging = (lock_of(repo)["environments"][env]["geo.capital"] for env in ("dev", "staging"))
    assert staging["version"] == dev["version"] != version_of(repo, "geo.capital")
    assert staging["commit"] == dev["commit"] != newer


def test_unknown_environment_and_prompt(repo: Path, stub: StubServer) -> None:
    assert "no environment 'qa'" in promote(repo, stub, "geo.capital", "qa", expect=2).stderr
    assert "no prompt has id 'nope'" in promote(repo, stub, "nope", "dev", expect=2).stderr


def test_environments_come_from_promptops_yaml(repo: Path, stub: StubServer, shared_cache: Path) -> None:
    configure(repo, shared_cache, "environments: [canary, live]\n")
    commit(repo, "two environments")
    assert "no environment 'dev'" in promote(repo, stub, "geo.capital", "dev", expect=2).stderr
    promote(repo, stub, "geo.capital", "canary")
    promote(repo, stub, "geo.capital", "live")
    assert list(lock_of(repo)["environments"]) == ["canary", "live"]


def test_a_failed_gate_refuses_and_force_records_why(repo: Path, stub: StubServer) -> None:
    write_prompt(repo, "geo.capital", RUDE)
    commit(repo, "rude")
    done = promote(repo, stub, "geo.capital", "dev", expect=1)
    assert "failed its gates" in done.stderr and "pass rate 0.0% is below the minimum 90.0%" in done.stderr
    assert not (repo / lockfile.LOCK_NAME).exists() and not (repo / lockfile.RELEASES).exists()
    assert "--force needs --reason" in promote(repo, stub, "geo.capital", "dev", "--force", expect=2).stderr
    done = promote(repo, stub, "geo.capital", "dev", "--force", "--reason", "incident 42: vendor asked")
    assert "FORCED past" in done.stdout
    entry = lock_of(repo)["environments"]["dev"]["geo.capital"]
    assert entry["forced"] is True and entry["reason"] == "incident 42: vendor asked"
    assert entry["evidence"]["passed"] is False and "failed its gates" in entry["overridden"][0]
    [record] = audit_of(repo)
    assert record["forced"] and record["reason"] == "incident 42: vendor asked" and record["overridden"]


def test_without_a_pass_rate_gate_every_case_must_pass(repo: Path, stub: StubServer) -> None:
    suite = SUITE.replace("gates: {max_pass_rate_drop: 0.05}\n", "")  # no gate a head-only run can check
    suite += ("  - {id: atlantis, vars: {country: Atlantis}, expected: Poseidonia, "
              "assert: [{type: contains, value: Poseidonia}]}\n")
    (repo / "geo_capital.eval.yaml").write_text(suite)
    commit(repo, "a case the model fails, and no gates")
    done = promote(repo, stub, "geo.capital", "dev", expect=1)
    assert "pass rate 88.9% is below the minimum 100.0%" in done.stderr


def test_no_suite_means_no_evidence(repo: Path, stub: StubServer) -> None:
    done = promote(repo, stub, "nosuite", "dev", expect=1)
    assert "no eval suite tests 'nosuite'" in done.stderr
    promote(repo, stub, "nosuite", "dev", "--force", "--reason", "suite comes next sprint")
    entry = lock_of(repo)["environments"]["dev"]["nosuite"]
    assert entry["forced"] and "no eval suite" in entry["overridden"][0]


def test_nothing_cached_and_no_key_is_a_clear_refusal(repo: Path) -> None:
    write_prompt(repo, "geo.capital", "Never cached.")
    commit(repo, "uncached")
    done = promote(repo, None, "geo.capital", "dev", expect=2)
    assert "OPENAI_API_KEY" in done.stderr and "--api-base" in done.stderr and "--force" in done.stderr
    assert not (repo / lockfile.LOCK_NAME).exists()


def test_failing_model_calls_exit_3(repo: Path, shared_cache: Path) -> None:
    configure(repo, shared_cache, eval_extra=", retries: 0")
    write_prompt(repo, "geo.capital", "Never answered.")
    commit(repo, "no retries")
    done = po(repo, "promote", "geo.capital", "--to", "dev", "--api-base", "http://127.0.0.1:9/v1", expect=3)
    assert "model call(s) failed" in done.stderr and not (repo / lockfile.LOCK_NAME).exists()


def test_uncommitted_changes_are_refused(repo: Path, stub: StubServer) -> None:
    write_prompt(repo, "geo.capital", BETTER)
    done = promote(repo, stub, "geo.capital", "dev", expect=2)
    assert "uncommitted changes (geo_capital.prompt.yaml)" in done.stderr and "--ref" in done.stderr
    assert "uncommitted" in promote(repo, stub, "geo.capital", "dev", "--force", "--reason", "x", expect=2).stderr
    (repo / "new.prompt.yaml").write_text(PROMPT.replace("geo.capital", "brand.new").replace("SYSTEM", GOOD))
    assert "is not committed" in promote(repo, stub, "brand.new", "dev", expect=2).stderr
    promote(repo, stub, "geo.capital", "dev", "--ref", "HEAD")  # the committed version, explicitly
    assert lock_of(repo)["environments"]["dev"]["geo.capital"]["version"] != version_of(repo, "geo.capital")


def test_rollback_returns_to_the_version_before_or_a_named_one(repo: Path, stub: StubServer) -> None:
    versions = []
    for system in (GOOD, BETTER, "Answer with the name of the capital."):
        write_prompt(repo, "geo.capital", system)
        if system != GOOD:
            commit(repo, system)
        versions.append(version_of(repo, "geo.capital"))
        promote(repo, stub, "geo.capital", "dev")
    first, second, third = versions
    entry = lock_of(repo)["environments"]["dev"]["geo.capital"]
    assert entry["version"] == third and [old["version"] for old in entry["history"]] == [second, first]
    done = po(repo, "rollback", "geo.capital", "--env", "dev", "--reason", "answers too long", expect=0)
    assert f"rolled back 'geo.capital' {second} in dev (was {third})" in done.stdout
    entry = lock_of(repo)["environments"]["dev"]["geo.capital"]
    assert entry["version"] == second and entry["action"] == "rollback" and entry["history"][0]["version"] == first
    assert entry["reason"] == "answers too long" and entry["evidence"]["passed"]
    assert audit_of(repo)[-1] | {"at": None, "evidence": None} == {
        "at": None, "by": "release-tester", "action": "rollback", "prompt": "geo.capital", "environment": "dev",
        "version": second, "previous": third, "commit": entry["commit"], "forced": False, "overridden": [],
        "reason": "answers too long", "evidence": None}
    assert "never held" in po(repo, "rollback", "geo.capital", "--env", "dev", "--to", "0123456789ab", expect=2).stderr
    po(repo, "rollback", "geo.capital", "--env", "dev", "--to", first, expect=0)
    entry = lock_of(repo)["environments"]["dev"]["geo.capital"]
    assert entry["version"] == first and entry["history"] == []
    assert "no earlier version" in po(repo, "rollback", "geo.capital", "--env", "dev", expect=2).stderr
    assert "holds no version" in po(repo, "rollback", "geo.capital", "--env", "prod", expect=2).stderr
    history = json.loads(po(repo, "history", "geo.capital", "--format", "json", expect=0).stdout)
    assert [(r["action"], r["version"]) for r in history] == [
        ("promote", first), ("promote", second), ("promote", third), ("rollback", second), ("rollback", first)]
    text = po(repo, "history", "geo.capital", expect=0).stdout
    assert text.count("\n") == 5 and "reason: answers too long" in text
    assert "no prompt has id" in po(repo, "history", "nope", expect=2).stderr


def test_status_marks_lagging_and_removed(repo: Path, stub: StubServer) -> None:
    promote(repo, stub, "geo.capital", "dev")
    promote(repo, stub, "nosuite", "dev", "--force", "--reason", "demo")
    old = version_of(repo, "geo.capital")
    write_prompt(repo, "geo.capital", BETTER)
    (repo / "nosuite.prompt.yaml").unlink()
    report = json.loads(po(repo, "status", "--format", "json", expect=0).stdout)
    assert report["environments"] == ["dev", "staging", "prod"]
    rows = {row["id"]: row for row in report["prompts"]}
    assert rows["geo.capital"]["head"] == version_of(repo, "geo.capital")
    assert rows["geo.capital"]["environments"]["dev"]["version"] == old
    assert rows["geo.capital"]["environments"]["dev"]["state"] == "behind"
    assert rows["geo.capital"]["environments"]["prod"] is None
    assert rows["nosuite"]["head"] is None and rows["nosuite"]["environments"]["dev"]["state"] == "removed"
    assert rows["nosuite"]["environments"]["dev"]["forced"] is True
    text = po(repo, "status", expect=0).stdout
    assert f"{old} (behind)" in text and "(removed) (forced)" in text and "2 environment entries behind" in text


def test_commit_makes_a_commit_of_exactly_the_release_files(repo: Path, stub: StubServer) -> None:
    (repo / "unrelated.txt").write_text("staged, not for this commit\n")
    git(repo, "add", "unrelated.txt")
    promote(repo, stub, "geo.capital", "dev", "--commit")
    version = version_of(repo, "geo.capital")
    subject, *files = git(repo, "show", "--name-only", "--format=%s", "HEAD").split("\n")
    assert subject == f"promptops: promote geo.capital {version} in dev"
    assert sorted(f for f in files if f) == sorted(
        [".promptops/audit.log", f".promptops/releases/geo.capital/{version}.json", "promptops.lock.yaml"])
    assert "unrelated.txt" in git(repo, "diff", "--cached", "--name-only")
    promote(repo, None, "geo.capital", "staging", "--commit")
    assert "promptops.lock.yaml" in git(repo, "show", "--name-only", "--format=", "HEAD")
