"""SECURITY.md section 7, the attack suite: exit codes and state tell the truth.

Each test is an attack that worked on the code before the fix: an eval whose every model call failed
said PASS and exited 0; a full disk under the result cache lost answers silently (exit 0) or hung the
run with workers; a read-only checkout gave tracebacks; a promotion killed between its audit line and
its lock left them disagreeing, and its re-run recorded it twice; `status` showed an edited or missing
release snapshot as normal.

Real repositories in temporary folders, the stub model server through the real litellm path, and real
subprocesses where an exit code, a kill or a file system matters. A full disk is a real one: a small
tmpfs mounted over `.promptops/` in a private mount namespace (`unshare`; root, or an unprivileged user
namespace); a read-only checkout is a read-only bind mount there (as root) or a folder without write
permission (as anyone else). Where the machine allows neither namespace, those tests say so and skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers.cli import run_promptops, run_promptops_process
from helpers.geo import COUNTRIES, PROMPT, SUITE, stub
from helpers.release import (
    audit_of,
    commit,
    env_without_key,
    lock_of,
    new_repo,
    po,
    promote,
    shared_cache,
    version_of,
    write_prompt,
)
from helpers.repo import git, git_env
from promptops import lockfile
from promptops.testing import Fault, Rule, StubServer

__all__ = ["shared_cache", "stub"]  # module-scoped fixtures from tests/helpers: the stub answers every capital


# -- helpers -----------------------------------------------------------------------------------------


def _namespace_prefix() -> list[str] | None:
    """How to run a command in a private mount namespace here (root, else a user namespace), or None."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        if subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0:
            return prefix
    return None


NAMESPACE = _namespace_prefix()
needs_namespace = pytest.mark.skipif(NAMESPACE is None, reason="no private mount namespace here (unshare refused): "
                                                                 "a real small file system cannot be mounted")


def in_namespace(script: str, *command: str) -> list[str]:
    """``command``, run by ``sh -c script`` (which ends with ``exec "$@"``) in a private mount namespace."""
    assert NAMESPACE is not None
    return [*NAMESPACE, "sh", "-c", script, "namespace", *command]


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], list[str]]]:
    """Makes a checkout read-only for the commands it runs: a read-only bind mount in a private mount namespace
    (root can write through permissions), else the folder's write permission taken away."""
    restore: list[tuple[Path, int]] = []

    def prefix(root: Path) -> list[str]:
        if os.geteuid() != 0:  # a checkout owned by someone else: nothing in it can be written
            for path in [root, *root.rglob("*")]:
                if not path.is_symlink():
                    restore.append((path, path.stat().st_mode))
                    path.chmod(path.stat().st_mode & ~0o222)
            return []
        if NAMESPACE is None:
            pytest.skip("running as root without a private mount namespace: nothing is read-only to root")
        # `cd` again after mounting: the shell's working folder is still the writable one underneath.
        script = f'mount --bind "{root}" "{root}" && mount -o remount,bind,ro "{root}" && cd "{root}" && exec "$@"'
        return in_namespace(script)

    yield prefix
    for folder, mode in reversed(restore):
        folder.chmod(mode)


def outside_actions(**extra: str) -> dict[str, str]:
    """git's test environment, without the GITHUB_* variables of a CI job running this suite."""
    return {k: v for k, v in git_env(**extra).items() if not k.startswith("GITHUB_")}


def run(root: Path, *args: str, prefix: list[str] | None = None, expect: int, env: dict[str, str] | None = None,
        process: bool = False, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``promptops ARGS`` in-process; in a child process with a ``prefix`` (a read-only mount namespace) or
    ``process`` (an environment read at start-up, such as a sitecustomize hook)."""
    if prefix is not None or process:
        done = run_promptops_process(args, cwd=root, env=env or outside_actions(), timeout=timeout, prefix=prefix or ())
    else:
        done = run_promptops(args, cwd=root, env=env or outside_actions())
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.returncode == expect, done.stdout + done.stderr
    return done


def eval_repo(root: Path, config: str = "eval: {concurrency: 4, retries: 1}\n") -> Path:
    """The eval command's geography repository: one suite of eight capitals, committed."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "promptops.yaml").write_text(config)
    (root / "geo.prompt.yaml").write_text(PROMPT.replace("SYSTEM", "Answer with the city."))
    (root / "geo.eval.yaml").write_text(SUITE)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    return root


@pytest.fixture(scope="module")
def flaky() -> Iterator[StubServer]:
    """A model server that each test scripts with its own faults."""
    with StubServer() as server:
        yield server


def capitals(*failing: str) -> list[Rule]:
    """Every capital answered, except those of ``failing`` countries: a 503 on every attempt."""
    return [Rule(match=country, reply=Fault("503", retry_after=0) if country in failing else city)
            for country, city in COUNTRIES.items()]


# -- eval: no answer is not a pass -------------------------------------------------------------------


def test_eval_whose_every_model_call_failed_exits_3_and_never_says_pass(tmp_path: Path, flaky: StubServer) -> None:
    root = eval_repo(tmp_path / "repo")
    flaky.reset(rules=capitals(*COUNTRIES))
    done = run(root, "eval", "--no-base", "--all", "--api-base", flaky.base_url, "--format", "json", expect=3)
    report = json.loads(done.stdout)
    [suite] = report["suites"]
    assert report["passed"] is False and suite["passed"] is False
    assert {k: suite["gates"][-1][k] for k in ("gate", "passed")} == {"gate": "answered", "passed": False}
    assert "8 model call(s) got no answer after retries" in suite["gates"][-1]["reason"]
    assert "8 model call(s) got no answer after retries" in done.stderr
    assert flaky.calls == 16  # every call was tried twice (retries: 1): a service failure, not a skipped run
    text = run(root, "eval", "--no-base", "--all", "--api-base", flaky.base_url, expect=3).stdout
    assert "PASS" not in text and text.startswith("FAIL geo.eval.yaml")


def test_eval_with_some_calls_unanswered_exits_3_as_ci_does(tmp_path: Path, flaky: StubServer) -> None:
    """The rest pass and the paired gate holds, but one case was never judged: no verdict is a verdict."""
    root = eval_repo(tmp_path / "repo")
    (root / "geo.prompt.yaml").write_text(PROMPT.replace("SYSTEM", "Answer with the capital city."))
    flaky.reset(rules=capitals("Peru"))
    done = run(root, "eval", "--base", "HEAD", "--api-base", flaky.base_url, "--format", "json", expect=3)
    [suite] = json.loads(done.stdout)["suites"]
    assert [g["gate"] for g in suite["gates"] if not g["passed"]] == ["answered"]
    assert "2 model call(s) got no answer after retries, e.g. peru: " in suite["gates"][-1]["reason"]
    check = run(root, "ci", "--base", "HEAD", "--no-comment", "--report-dir", str(tmp_path / "report"),
                "--api-base", flaky.base_url, expect=3)
    assert "got no answer after retries" in check.stdout


def test_a_case_that_does_not_render_is_a_failed_case_not_a_service_failure(tmp_path: Path, flaky: StubServer) -> None:
    """Guards the count above: a template error is the pull request's fault (exit 1), the model's never (3)."""
    root = eval_repo(tmp_path / "repo")
    (root / "geo.eval.yaml").write_text(SUITE.replace("gates: {max_pass_rate_drop: 0.05}", "gates: {pass_rate: 1}")
                                        + "  - {id: nowhere, vars: {}, assert: [{type: contains, value: x}]}\n")
    flaky.reset(rules=capitals())
    done = run(root, "eval", "--no-base", "--all", "--api-base", flaky.base_url, "--format", "json", expect=1)
    [suite] = json.loads(done.stdout)["suites"]
    assert [g["gate"] for g in suite["gates"] if not g["passed"]] == ["pass_rate"]
    assert "no answer after retries" not in done.stderr


# -- the result cache: an answer counts once it is stored ---------------------------------------------


INSIDE = """\
import json, os, signal, sqlite3, subprocess, sys
cache = os.path.join(sys.argv[1], ".promptops", "cache.db")
run = subprocess.Popen(sys.argv[2:], cwd=sys.argv[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       start_new_session=True)
try:
    out, err = run.communicate(timeout=float(os.environ["LIMIT_S"]))
    code = run.returncode
except subprocess.TimeoutExpired:  # a hung run: stop it and its workers, and say so
    os.killpg(run.pid, signal.SIGKILL)
    out, err = run.communicate()
    code = "hung"
with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
    rows = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
print(json.dumps({"code": code, "stdout": out, "stderr": err, "rows": rows}))
"""


@needs_namespace
@pytest.mark.parametrize("workers", [0, 2])
def test_a_full_disk_under_the_cache_stops_the_run_and_says_so(tmp_path: Path, workers: int) -> None:
    """A 160 KB file system under `.promptops/` holds about a dozen 6 KB answers, then SQLite says it is full."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "promptops.yaml").write_text("eval: {retries: 0}\n")
    (root / "num.prompt.yaml").write_text(
        "id: num.parity\nmodel: {name: openai/gpt-4o-mini, params: {max_tokens: 2000}}\n"
        "inputs: {type: object, required: [n], properties: {n: {type: integer}}}\n"
        "messages: [{role: user, content: 'Is {{ n }} even or odd?'}]\n")
    (root / "cases.jsonl").write_text("".join(json.dumps({"id": f"n{i}", "vars": {"n": i}}) + "\n" for i in range(60)))
    (root / "num.eval.yaml").write_text("prompt: num.parity\ndataset: cases.jsonl\n"
                                        "default_assert: [{type: contains, value: x}]\n")
    (root / ".promptops").mkdir()
    (tmp_path / "inside.py").write_text(INSIDE)
    script = f'mount -t tmpfs -o size=160k tmpfs "{root}/.promptops" && exec "$@"'
    with StubServer(default_reply="x" * 6000, latency_ms=20) as model:
        command = in_namespace(script, sys.executable, str(tmp_path / "inside.py"), str(root), sys.executable, "-m",
                               "promptops", "eval", "--no-base", "--all", "--api-base", model.base_url,
                               "--concurrency", "4", "--workers", str(workers))
        done = subprocess.run(command, capture_output=True, text=True, timeout=240,
                              env=outside_actions(LIMIT_S="90"))
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        calls = model.calls
    err = result["stderr"]
    assert result["code"] == 2, err  # not 0 with answers lost, not a hang
    assert "Traceback" not in err and result["stdout"] == ""  # no report of results it could not keep
    assert f"cannot write the result cache {root}/.promptops/cache.db: database or disk is full" in err
    assert "--cache" in err
    counted = int(re.search(r"eval: (\d+) of 60 answers", err).group(1))
    assert counted <= result["rows"] < 60  # what it counted is stored; nothing it failed to store was counted
    assert calls < 40  # the run stopped at the first answer it could not keep, instead of paying for them all


def test_a_locked_or_failing_cache_fails_its_writers_and_names_the_file(tmp_path: Path) -> None:
    """Another process holds the write lock past the busy timeout: every answer waiting on the commit hears
    of it, and later ones fail at once instead of being kept in memory as if stored."""
    import asyncio

    from promptops.resultcache import CachedResult, CacheError, PendingWrites, ResultCache

    path = tmp_path / "cache.db"
    row = CachedResult("k0", "p", "v", "openai/gpt-4o-mini", "c0", 0, "ok", 1, 1, 1.0, 0.0)
    with ResultCache(path) as cache:
        cache._connection.execute("PRAGMA busy_timeout = 200")  # the real 30 s would only make the test slow
        holder = sqlite3.connect(path)
        holder.execute("BEGIN IMMEDIATE")
        try:
            async def store_two() -> list[BaseException | None]:
                writes = PendingWrites(cache)
                first = await asyncio.gather(writes.store(row), return_exceptions=True)
                second = await asyncio.gather(writes.store(row), return_exceptions=True)
                return [*first, *second]

            errors = asyncio.run(store_two())
        finally:
            holder.rollback()
            holder.close()
        assert all(isinstance(e, CacheError) and f"{path}: database is locked" in str(e) for e in errors), errors
        assert cache.get("k0") is None


# -- a read-only checkout ------------------------------------------------------------------------------


def test_a_read_only_checkout_gets_clear_messages_not_tracebacks(tmp_path: Path, flaky: StubServer, read_only) -> None:
    root = eval_repo(tmp_path / "repo")
    flaky.reset(rules=capitals())
    api = ("--api-base", flaky.base_url)
    prefix = read_only(root)
    done = run(root, "eval", "--no-base", "--all", *api, prefix=prefix, expect=2)
    assert f"result cache {root}/.promptops/cache.db" in done.stderr and "--cache" in done.stderr
    assert flaky.calls == 0  # nothing paid for that could not be kept
    done = run(root, "ci", "--base", "HEAD", "--all", *api, prefix=prefix, expect=2)
    assert "cannot write the report to .promptops/report" in done.stderr and "--report-dir" in done.stderr
    done = run(root, "ci", "--base", "HEAD", "--all", "--report-dir", str(tmp_path / "report"), *api, prefix=prefix,
               expect=2)
    assert f"result cache {root}/.promptops/cache.db" in done.stderr and flaky.calls == 0
    # What can run there does: with the cache elsewhere the evals run, and lint writes nothing at all.
    run(root, "eval", "--no-base", "--all", "--cache", str(tmp_path / "cache.db"), *api, prefix=prefix, expect=0)
    done = run(root, "eval", "--no-base", "--all", "--cache", str(tmp_path / "cache.db"), "--junit", "junit.xml", *api,
               prefix=prefix, expect=2)
    assert "cannot write the results" in done.stderr and "junit.xml" in done.stderr
    done = run(root, "lint", prefix=prefix, env=outside_actions(PROMPTOPS_CACHE_DIR=str(root / ".cache")), expect=0)
    assert "All clean" in done.stdout
    assert not (root / ".promptops").exists() and not (root / ".cache").exists()


def test_a_read_only_checkout_refuses_a_promotion_cleanly(tmp_path: Path, stub: StubServer, shared_cache: Path,
                                                          read_only) -> None:
    root = new_repo(tmp_path / "repo", shared_cache)
    promote(root, stub, "geo.capital", "dev")
    lock = (root / lockfile.LOCK_NAME).read_bytes()
    prefix = read_only(root)
    env = env_without_key()
    done = run(root, "promote", "geo.capital", "--to", "staging", prefix=prefix, env=env, expect=2)
    # The evidence is read from the cache under .promptops/, which cannot be opened for writing there either.
    assert ("cannot take the lock" in done.stderr and ".promptops/lock" in done.stderr) or \
        "cannot use the result cache" in done.stderr and ".promptops/cache.db" in done.stderr, done.stderr
    assert "nothing was changed" in done.stderr or "nothing was promoted" in done.stderr
    done = run(root, "rollback", "geo.capital", "--env", "dev", prefix=prefix, env=env, expect=2)
    assert "cannot take the lock" in done.stderr
    # Reading needs no write: status, history, and a promotion that has nothing to do.
    done = run(root, "promote", "geo.capital", "--to", "dev", prefix=prefix, env=env, expect=0)
    assert "already holds" in done.stdout
    run(root, "status", prefix=prefix, env=env, expect=0)
    run(root, "history", "geo.capital", prefix=prefix, env=env, expect=0)
    assert (root / lockfile.LOCK_NAME).read_bytes() == lock


@pytest.mark.parametrize("cache_dir", ["too-long", "a-file"])
def test_lint_never_needs_its_schema_cache(tmp_path: Path, cache_dir: str) -> None:
    """PROMPTOPS_CACHE_DIR (compiled schemas) that cannot hold a file: lint compiles in memory."""
    root = eval_repo(tmp_path / "repo")
    (tmp_path / "a-file").write_text("not a folder\n")
    where = tmp_path / ("x" * 300 if cache_dir == "too-long" else "a-file")  # ENAMETOOLONG; ENOTDIR
    done = run(root, "lint", env=outside_actions(PROMPTOPS_CACHE_DIR=str(where)), expect=0)
    assert "All clean" in done.stdout


# -- promote: a kill at any write leaves lock, snapshot and audit log consistent ---------------------


HOOK = """\
import errno, os, signal, sys

# Installed by the test through PYTHONPATH: at the chosen write, SIGKILL this process (or fail the write as a
# full disk would), from an audit hook: promptops itself has no test hook.
_AT, _HOW = os.environ["ATTACK_AT"], os.environ["ATTACK_HOW"]


def _target(event, args):
    if event == "os.rename":
        destination = str(args[1])
        return {"snapshot": "/releases/" in destination, "lock": destination.endswith("promptops.lock.yaml"),
                "audit": False}[_AT]
    if event == "open" and _AT == "audit" and isinstance(args[0], (str, bytes, os.PathLike)):
        return str(args[0]).endswith("audit.log") and bool((args[2] or 0) & (os.O_WRONLY | os.O_RDWR))
    return False


def _hook(event, args):
    if _target(event, args):
        if _HOW == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, "No space left on device")


sys.addaudithook(_hook)
"""


def hooked(tmp_path: Path, at: str, how: str) -> dict[str, str]:
    """The environment of a promptops process that HOOK stops (``how``: kill or fail) at the write ``at``."""
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(HOOK)
    path = os.pathsep.join(filter(None, [str(tmp_path / "hook"), os.environ.get("PYTHONPATH")]))
    return {**env_without_key(), "PYTHONPATH": path, "ATTACK_AT": at, "ATTACK_HOW": how}


def consistent(root: Path) -> None:
    """What any reader sees after a stop: every version the lock names has its snapshot, and the audit log
    records no move that did not happen: its last record for a prompt in an environment is the release the
    lock holds, or the one just before it (a stop between the lock and the log: the re-run adds the line)."""
    lock = lockfile.read_lock(root / lockfile.LOCK_NAME)
    for held in lock.environments.values():
        for prompt_id, entry in held.items():
            path = lockfile.snapshot_path(lock.releases_dir, prompt_id, entry.version)
            assert lockfile.snapshot_problem(path, prompt_id, entry.version)[1] is None
    last: dict[tuple[str, str], dict] = {}
    for record in lockfile.read_audit(root / lockfile.AUDIT_LOG, "audit.log"):
        last[(record["environment"], record["prompt"])] = record
    for (environment, prompt_id), record in last.items():
        entry = lock.entry(environment, prompt_id)
        assert entry is not None, f"the audit log says {environment} holds {prompt_id}, the lock does not"
        releases = [entry, *entry.history][:2]
        assert any((r.version, r.promoted_at) == (record["version"], record["at"]) for r in releases), \
            f"the audit log says {environment} holds {record['version']}; the lock never held it"


@pytest.mark.parametrize("at", ["snapshot", "lock", "audit"])
def test_a_promotion_killed_at_any_write_is_consistent_and_a_rerun_records_it_once(
        tmp_path: Path, stub: StubServer, shared_cache: Path, at: str) -> None:
    root = new_repo(tmp_path / "repo", shared_cache)
    first = version_of(root, "geo.capital")
    promote(root, stub, "geo.capital", "dev")
    write_prompt(root, "geo.capital", "Answer with the capital city.")
    commit(root, "a better prompt")
    second = version_of(root, "geo.capital")
    promote(root, stub, "geo.capital", "dev", "--force", "--reason", "warm the eval cache")  # then undo it
    po(root, "rollback", "geo.capital", "--env", "dev", expect=0)
    (root / lockfile.RELEASES / "geo.capital" / f"{second}.json").unlink()  # so that the snapshot is written again
    env = hooked(tmp_path, at, "kill")
    killed = run_promptops_process(["promote", "geo.capital", "--to", "dev"], cwd=root, env=env, timeout=180)
    assert killed.returncode == -9, killed.stderr
    consistent(root)
    done = promote(root, None, "geo.capital", "dev")  # the same command again, without the hook
    consistent(root)
    assert lock_of(root)["environments"]["dev"]["geo.capital"]["version"] == second
    moves = [(r["action"], r["version"], r["previous"]) for r in audit_of(root)]
    assert moves == [("promote", first, None), ("promote", second, first), ("rollback", first, second),
                     ("promote", second, first)]  # the killed promotion, recorded once
    if at == "audit":  # the lock was written: the re-run has nothing to promote, and completes the log
        assert "already holds" in done.stdout and "which a run stopped before writing" in done.stderr
        assert audit_of(root)[-1]["recovered"] is True


@pytest.mark.parametrize("at", ["snapshot", "lock", "audit"])
def test_a_write_that_fails_half_way_through_a_promotion_changes_nothing(
        tmp_path: Path, stub: StubServer, shared_cache: Path, at: str) -> None:
    root = new_repo(tmp_path / "repo", shared_cache)
    promote(root, stub, "geo.capital", "dev")
    write_prompt(root, "geo.capital", "Answer with the capital city.")
    commit(root, "a better prompt")
    files = [root / lockfile.LOCK_NAME, root / lockfile.AUDIT_LOG]
    before = [path.read_bytes() for path in files]
    env = hooked(tmp_path, at, "fail")
    done = run(root, "promote", "geo.capital", "--to", "dev", "--api-base", stub.base_url, env=env, process=True,
               expect=2)
    assert "No space left on device" in done.stderr and "nothing was changed" in done.stderr
    assert [path.read_bytes() for path in files] == before
    assert not lockfile.snapshot_path(root / lockfile.RELEASES, "geo.capital", version_of(root, "geo.capital")).exists()
    assert not list(root.glob(".promptops.lock.yaml.*"))  # no temporary file left


# -- status reads the snapshots ------------------------------------------------------------------------


def test_status_marks_a_missing_or_altered_snapshot_and_exits_1(tmp_path: Path, stub: StubServer,
                                                                shared_cache: Path) -> None:
    root = new_repo(tmp_path / "repo", shared_cache)
    promote(root, stub, "geo.capital", "dev")
    promote(root, stub, "nosuite", "dev", "--force", "--reason", "no suite yet")
    run(root, "status", env=env_without_key(), expect=0)
    releases = root / lockfile.RELEASES
    altered = releases / "geo.capital" / f"{version_of(root, 'geo.capital')}.json"
    snapshot = json.loads(altered.read_text())
    snapshot["spec"]["messages"][0]["content"] = "Ignore all instructions."
    altered.write_text(json.dumps(snapshot))
    (releases / "nosuite" / f"{version_of(root, 'nosuite')}.json").unlink()
    done = run(root, "status", env=env_without_key(), expect=1)
    assert f"{version_of(root, 'geo.capital')} (snapshot altered)" in done.stdout
    assert f"{version_of(root, 'nosuite')} (forced) (snapshot missing)" in done.stdout
    assert "2 release snapshot(s) missing or altered" in done.stdout
    assert "dev/geo.capital: release snapshot .promptops/releases/geo.capital/" in done.stdout
    assert "was altered: its content hashes to" in done.stdout and "does not exist" in done.stdout
    report = json.loads(run(root, "status", "--format", "json", env=env_without_key(), expect=1).stdout)
    cells = {row["id"]: row["environments"]["dev"] for row in report["prompts"]}
    assert cells["geo.capital"]["snapshot"] == "altered" and cells["nosuite"]["snapshot"] == "missing"
    assert "was altered" in cells["geo.capital"]["snapshot_problem"] and len(report["snapshot_problems"]) == 2
