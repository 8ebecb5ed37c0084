"""`promptops promote` and `promptops rollback`: move an environment's pointer, with evidence, recorded.

Promotion reads the prompt at a commit (never the working tree: the lock
records a commit), follows the order in promptops.yaml (an environment only
receives what the one before it holds), and requires evidence that this exact
version passed its suites' gates at that commit: the eval engine, which
answers from its cache when it can. Then, under an exclusive file lock, it
writes the release snapshot, the lock and an audit line, in that order: an
error undoes what was written, and a kill leaves at most the audit line out,
which the next write of that prompt and environment (the same command again)
appends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptops import git, lockfile
from promptops.config import ConfigError, Workspace, load_workspace
from promptops.errors import ExitCode, PromptopsError
from promptops.lockfile import Release
from promptops.model.release import Action, ReleaseOutcome
from promptops.specs import PromptSpec

if TYPE_CHECKING:  # the eval engine is imported only when evidence is gathered: rollback and status skip it
    from promptops.model.evals import SuiteComparison


class ReleaseError(PromptopsError):
    """Why nothing was changed; ``exit_code`` is the CLI's (1 refused, 2 bad input, 3 a service failed)."""


@dataclass
class Evidence:
    """What this version's suites showed at the commit; ``failures`` say which gates failed."""

    suites: list[dict[str, Any]]
    pass_rate: float
    cases: int
    cost_per_call_usd: float | None
    latency_p95_ms: float | None
    model_calls: int
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.suites) and not self.failures

    def record(self) -> dict[str, Any]:
        cost = None if self.cost_per_call_usd is None else float(f"{self.cost_per_call_usd:.6g}")
        latency = None if self.latency_p95_ms is None else round(self.latency_p95_ms, 1)
        return {"suites": self.suites, "pass_rate": round(self.pass_rate, 6), "cases": self.cases,
                "cost_per_call_usd": cost, "latency_p95_ms": latency,
                "model_calls": self.model_calls, "passed": self.passed}


@dataclass(frozen=True)
class ReleaseProject:
    """The project around the current folder: its config, lock and where things are written."""

    root: Path
    workspace: Workspace
    lock: lockfile.Lock

    @classmethod
    def open(cls, start: Path) -> ReleaseProject:
        try:
            workspace = load_workspace(start)
        except ConfigError as exc:
            raise ReleaseError(str(exc)) from None
        root = workspace.config.root
        return cls(root, workspace, read_project_lock(root))

    @property
    def environments(self) -> list[str]:
        return self.workspace.config.environments

    def environment_index(self, environment: str) -> int:
        if environment not in self.environments:
            raise ReleaseError(f"no environment '{environment}' (promptops.yaml environments: "
                               f"{', '.join(self.environments)})")
        return self.environments.index(environment)


def read_project_lock(root: Path) -> lockfile.Lock:
    path = root / lockfile.LOCK_NAME
    try:
        return lockfile.read_lock(path, _display(path))
    except lockfile.LockError as exc:
        raise ReleaseError(str(exc)) from None


def _display(path: Path) -> str:
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


# --- evidence --------------------------------------------------------------------------------------

def gather_evidence(workspace: Workspace, prompt_id: str, api_base: str | None = None,
                    progress: Callable[[Any], None] = lambda outcome: None) -> Evidence:
    """Run (or read from the cache) every suite of ``prompt_id`` at this snapshot, head only, with gates.

    Without a pass_rate gate in the suite or promptops.yaml, promotion asks for every case to pass:
    a suite with no gate must not wave any version through. Raises MissingCredentials when a call is
    needed and no key is set, ReleaseError (exit 3) when model calls failed.
    """
    from promptops.evals import stats
    from promptops.evals.execute import EvalOptions, run_evaluation

    if not any(suite.prompt == prompt_id for suite in workspace.suites):
        return _summarise([], 0)  # no suite tests it: no evidence, which the promotion rules then weigh
    errors: list[str] = []
    made = 0

    def watch(outcome: Any) -> None:
        nonlocal made
        made += not outcome.cached and not outcome.shared
        if outcome.error is not None:
            errors.append(f"{outcome.call.case_id}: {outcome.error}")
        progress(outcome)

    options = EvalOptions(compare=False, suites=(prompt_id,), api_base=api_base)
    comparisons, skipped = asyncio.run(run_evaluation(workspace, workspace, options, watch))
    if errors:
        raise ReleaseError(f"{len(errors)} model call(s) failed while gathering evidence, e.g. {errors[0]}; "
                           "nothing was promoted", ExitCode.SERVICE)
    for comparison in comparisons:
        if not any(name == "pass_rate" for name, _ in comparison.gates):
            comparison.gates.append(("pass_rate", stats.min_pass_rate(comparison.head.pass_rate, 1.0)))
    evidence = _summarise(comparisons, made)
    evidence.failures += skipped
    return evidence


def _summarise(comparisons: list[SuiteComparison], calls_made: int) -> Evidence:
    suites, failures = [], []
    for comparison in comparisons:
        failed = [f"{name}: {result.reason}" for name, result in comparison.gates if not result.passed]
        suites.append({"name": comparison.suite, "pass_rate": round(comparison.head.pass_rate, 6),
                       "cases": comparison.head.cases, "passed": not failed, "failed_gates": failed})
        failures += [f"{comparison.suite}: {reason}" for reason in failed]
    heads = [c.head for c in comparisons]
    cases = sum(h.cases for h in heads)
    passed = sum(round(h.pass_rate * h.cases) for h in heads)
    calls = sum(h.calls for h in heads)
    costs = [h.cost_per_call_usd for h in heads]
    known_costs = [c for c in costs if c is not None]
    cost = None if not calls or len(known_costs) < len(costs) else \
        sum(c * h.calls for c, h in zip(known_costs, heads)) / calls
    latencies = [h.latency_p95_ms for h in heads if h.latency_p95_ms is not None]
    return Evidence(suites, passed / cases if cases else 0.0, cases, cost, max(latencies) if latencies else None,
                    calls_made, failures)


# --- promote -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    prompt_id: str
    environment: str
    ref: str | None = None
    force: bool = False
    reason: str | None = None
    commit: bool = False
    api_base: str | None = None


def promote(start: Path, request: Request, progress: Callable[[Any], None] = lambda outcome: None) -> ReleaseOutcome:
    """Promote ``request.prompt_id`` to ``request.environment``; raises ReleaseError saying why not."""
    from promptops.evals.runner import MissingCredentials
    from promptops.gitrefs import RefError
    from promptops.resultcache import CacheError

    if request.force and not (request.reason or "").strip():
        raise ReleaseError("--force needs --reason \"...\": the reason is recorded in the lock and the audit log")
    project = ReleaseProject.open(start)
    index = project.environment_index(request.environment)
    overridden: list[str] = []
    try:
        commit, spec, snapshot_ws = _prompt_at(project, request, index, overridden)
    except RefError as exc:
        raise ReleaseError(str(exc)) from None
    current = project.lock.entry(request.environment, request.prompt_id)
    if current is not None and current.version == spec.version:
        outcome = ReleaseOutcome(Action.UNCHANGED, spec.id, request.environment, spec.version, spec.version)
        outcome.notes = complete_audit(project.root, request.environment, spec.id)
        return outcome
    notes: list[str] = []
    try:
        evidence: Evidence | None = gather_evidence(snapshot_ws, spec.id, request.api_base, progress)
    except CacheError as exc:
        raise ReleaseError(f"no evidence gathered: {exc}; nothing was promoted (point eval.cache in promptops.yaml "
                           "at a file that can be written)") from None
    except MissingCredentials as exc:
        if not request.force:
            raise ReleaseError(f"no cached eval results for '{spec.id}' {spec.version} and the model cannot be "
                               f"called: {exc}. Or pass --force --reason \"...\"") from None
        evidence, notes = None, [f"no evidence gathered: {exc}"]
    _judge(evidence, spec, request, overridden)
    source = _source(spec, project.root)
    entry = _release(spec, commit, source, project.root, request.reason, evidence.record() if evidence else None,
                     overridden)
    snapshot = lockfile.make_snapshot(spec.id, spec.version, commit, source, spec.raw)
    previous_env = None if request.force or index == 0 else project.environments[index - 1]

    def change(lock: lockfile.Lock) -> tuple[ReleaseOutcome, Release]:
        _recheck_order(lock, spec, previous_env)  # another promotion may have landed while the evals ran
        held = lock.entry(request.environment, spec.id)
        outcome = ReleaseOutcome(Action.PROMOTE, spec.id, request.environment, spec.version,
                                 held.version if held else None,
                          entry.evidence, overridden, notes=notes)
        if held is not None and held.version == spec.version:
            outcome.action = Action.UNCHANGED
        return outcome, replace(entry, history=_history(held))

    return _record(project.root, request.environment, spec.id, change, snapshot, request.commit)


def _prompt_at(project: ReleaseProject, request: Request, index: int,
               overridden: list[str]) -> tuple[str, PromptSpec, Workspace]:
    """The commit to promote from, the prompt there, and the project there.

    The first environment takes HEAD by default; a later one takes the commit its predecessor's
    version came from, and an explicit --ref must hold that same version.
    """
    from promptops.gitrefs import open_repo, resolve_refs, snapshot

    previous_env = project.environments[index - 1] if index > 0 else None
    previous = project.lock.entry(previous_env, request.prompt_id) if previous_env else None
    label = request.ref or (previous.commit if previous else "HEAD")
    with open_repo(project.root) as repo:  # closed: its git cat-file processes end here
        _, ref = resolve_refs(repo, label, label)
        workspace = snapshot(repo, ref, project.root)
    commit = ref.commit or ""  # resolved from a name: always a commit
    spec = workspace.prompts.get(request.prompt_id)
    if spec is None:
        raise ReleaseError(_unknown_prompt(request.prompt_id, ref.name, project.workspace, workspace))
    if request.ref is None and previous is None:
        _refuse_uncommitted(project.workspace, spec)
    if previous_env and (previous is None or previous.version != spec.version):
        held = f"holds {previous.version}" if previous else "holds no version of it"
        problem = (f"{request.environment} only receives what {previous_env} holds: {previous_env} {held}, "
                   f"and {ref} has '{spec.id}' {spec.version}; promote it to {previous_env} first")
        if not request.force:
            raise ReleaseError(problem)
        overridden.append(problem)
    return commit, spec, workspace


def _unknown_prompt(prompt_id: str, where: str, tree: Workspace, at_ref: Workspace) -> str:
    if prompt_id in tree.prompts:
        return f"'{prompt_id}' is not committed ({tree.prompts[prompt_id].source.display}); commit it first"
    known = ", ".join(sorted(at_ref.prompts)) or "none"
    return f"no prompt has id '{prompt_id}' at {where} (known: {known})"


def _refuse_uncommitted(tree: Workspace, committed: PromptSpec) -> None:
    """The lock records a commit: promoting HEAD while the prompt differs on disk would record a lie."""
    local = tree.prompts.get(committed.id)
    if local is None or local.version != committed.version:
        where = local.source.display if local else committed.source.display
        raise ReleaseError(f"'{committed.id}' has uncommitted changes ({where}): the lock records a commit, so "
                           "commit them first, or pass --ref REF to promote a committed version")


def _judge(evidence: Evidence | None, spec: PromptSpec, request: Request, overridden: list[str]) -> None:
    """Refuse a version without evidence or with a failed gate, unless forced (then say what was overridden)."""
    if evidence is None:
        problem = "no evidence: its suites could not be run"
    elif not evidence.suites:
        problem = f"no evidence: no eval suite tests '{spec.id}'; add one (a *.eval.yaml with prompt: {spec.id})"
    elif evidence.failures:
        problem = f"'{spec.id}' {spec.version} failed its gates: " + "; ".join(evidence.failures)
    else:
        return
    if not request.force:
        raise ReleaseError(f"{problem}. Nothing was promoted (--force --reason \"...\" overrides, recorded)",
                           ExitCode.REFUSED)
    overridden.append(problem)


def _release(spec: PromptSpec, commit: str, source: str, root: Path, reason: str | None,
             evidence: dict[str, Any] | None, overridden: list[str]) -> Release:
    return Release(spec.version, commit, lockfile.now(), lockfile.who(root), "promote", source, bool(overridden),
                   reason, evidence, tuple(overridden))


def _source(spec: PromptSpec, root: Path) -> str:
    try:
        return spec.source.path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return spec.source.display


# --- rollback ------------------------------------------------------------------------------------

def rollback(start: Path, prompt_id: str, environment: str, to: str | None = None, reason: str | None = None,
             commit: bool = False) -> ReleaseOutcome:
    """Move ``environment`` back to the release it held before (or to ``to``, one it held earlier)."""
    project = ReleaseProject.open(start)
    project.environment_index(environment)  # an unknown environment raises ReleaseError
    root = project.root

    def change(lock: lockfile.Lock) -> tuple[ReleaseOutcome, Release]:
        entry = lock.entry(environment, prompt_id)
        if entry is None:
            raise ReleaseError(f"{environment} holds no version of '{prompt_id}'; nothing to roll back")
        if to == entry.version:
            return ReleaseOutcome(Action.UNCHANGED, prompt_id, environment, entry.version, entry.version), entry
        history = entry.history
        position = next((i for i, old in enumerate(history) if to is None or old.version == to), None)
        if position is None:
            earlier = ", ".join(old.version for old in history) or "none"
            wanted = f"{to} was never" if to else "no earlier version was"
            raise ReleaseError(f"{wanted} held by {environment} for '{prompt_id}' (earlier versions: {earlier}); "
                               "promote the version you want instead")
        target = history[position]
        _check_snapshot(lock, prompt_id, target.version)
        target = replace(target, action="rollback", promoted_at=lockfile.now(), promoted_by=lockfile.who(root),
                         reason=reason, forced=False, overridden=(), history=history[position + 1:])
        outcome = ReleaseOutcome(Action.ROLLBACK, prompt_id, environment, target.version, entry.version,
                                 target.evidence)
        return outcome, target

    return _record(root, environment, prompt_id, change, None, commit)


def _check_snapshot(lock: lockfile.Lock, prompt_id: str, version: str) -> None:
    try:
        lockfile.read_snapshot(lock.releases_dir, prompt_id, version)
    except lockfile.LockError as exc:
        raise ReleaseError(f"cannot roll back to {version}: {exc}") from None


# --- writing: snapshot, lock, audit line -----------------------------------------------------------

def _record(root: Path, environment: str, prompt_id: str,
            change: Callable[[lockfile.Lock], tuple[ReleaseOutcome, Release]],
            snapshot: dict[str, Any] | None, commit: bool) -> ReleaseOutcome:
    """Under the mutex: re-read the lock, append an audit line an earlier run was killed before writing, apply
    ``change``, and write what it asks for (see ``_write_all``)."""
    try:
        with lockfile.exclusive(root):
            lock = read_project_lock(root)
            completed = _complete_audit(root, lock, environment, prompt_id)
            outcome, entry = change(lock)
            outcome.notes += completed
            if outcome.action is Action.UNCHANGED:
                return outcome
            before = lock.path.read_text(encoding="utf-8") if lock.path.exists() else None
            lock.hold(outcome.environment, outcome.prompt_id, entry)
            _write_all(root, lock, before, outcome, entry, snapshot)
            if commit:
                outcome.committed = _git_commit(root, outcome)
            return outcome
    except lockfile.LockError as exc:  # raised before anything is written
        raise ReleaseError(f"{exc}; nothing was changed") from None


def _recheck_order(lock: lockfile.Lock, spec: PromptSpec, previous_env: str | None) -> None:
    if previous_env is None:
        return
    held = lock.entry(previous_env, spec.id)
    if held is None or held.version != spec.version:
        raise ReleaseError(f"{previous_env} no longer holds '{spec.id}' {spec.version} "
                           "(it changed while the evals ran); nothing was promoted")


def _history(current: Release | None) -> tuple[Release, ...]:
    if current is None:
        return ()
    return (current.without_history(), *current.history)[:lockfile.HISTORY_KEPT]


def _write_all(root: Path, lock: lockfile.Lock, before: str | None, outcome: ReleaseOutcome, entry: Release,
               snapshot: dict[str, Any] | None) -> None:
    """The snapshot, then the lock (the commit point, replaced atomically), then the audit line.

    An error or Ctrl-C takes back what was written (``before`` is the lock's text, None when there was none).
    A kill cannot, and leaves at most a snapshot no entry names (harmless: written once, never changed) or,
    after the lock, the audit line out, which the next promote or rollback of this prompt and environment
    appends (``_complete_audit``): the lock and history never disagree for long, and no promotion is
    recorded twice.
    """
    audit = root / lockfile.AUDIT_LOG
    created: Path | None = None
    locked = False
    try:
        created = lockfile.write_snapshot(lock.releases_dir, snapshot) if snapshot else None
        lockfile.write_atomic(lock.path, lock.text())
        locked = True
        lockfile.append_audit(audit, _audit_record(outcome, entry))
    except BaseException as exc:  # Ctrl-C included: never a lock entry without its audit line, if we can help it
        left = _take_back(lock.path, locked, before, created)
        if isinstance(exc, OSError):
            raise ReleaseError(f"could not write the release ({exc}); {left or 'nothing was changed'}") from None
        raise
    outcome.written = [p for p in (created, lock.path, audit) if p is not None]
    outcome.files = [lockfile.snapshot_path(lock.releases_dir, outcome.prompt_id, outcome.version), lock.path, audit]


def _take_back(lock_path: Path, locked: bool, before: str | None, created: Path | None) -> str | None:
    """Undo a write that failed half-way: the snapshot created, and the lock, if it was replaced, back to
    ``before`` (None: there was none). None when done, else what is left and how it gets completed."""
    if created is not None:
        with contextlib.suppress(OSError):  # left behind, it is harmless: no entry names it, and it never changes
            created.unlink()
    try:
        if locked and before is None:
            lock_path.unlink()
        elif locked and before is not None:
            lockfile.write_atomic(lock_path, before)
    except OSError as exc:
        return (f"the lock could not be put back either ({exc}): it holds the new version and the audit log does "
                "not yet; run the same command again to complete the audit log")
    return None


def complete_audit(root: Path, environment: str, prompt_id: str) -> list[str]:
    """Append the audit line a killed promotion or rollback of ``prompt_id`` in ``environment`` left out; notes
    saying what was appended. Checks without the mutex first: with nothing to complete, nothing is written
    (a read-only checkout is fine)."""
    if _missing_audit(root, read_project_lock(root), environment, prompt_id) is None:
        return []
    try:
        with lockfile.exclusive(root):
            return _complete_audit(root, read_project_lock(root), environment, prompt_id)
    except lockfile.LockError as exc:
        raise ReleaseError(f"{exc}; nothing was changed") from None


def _complete_audit(root: Path, lock: lockfile.Lock, environment: str, prompt_id: str) -> list[str]:
    """Under the mutex: append the missing audit line, if any (see ``_missing_audit``)."""
    record = _missing_audit(root, lock, environment, prompt_id)
    if record is None:
        return []
    try:
        lockfile.append_audit(root / lockfile.AUDIT_LOG, record)
    except OSError as exc:
        raise ReleaseError(f"{lockfile.AUDIT_LOG} lacks the record of {environment} moving to '{prompt_id}' "
                           f"{record['version']} (a run was stopped before writing it), and it cannot be appended: "
                           f"{exc}") from None
    return [f"{lockfile.AUDIT_LOG}: recorded {record['action']} of '{prompt_id}' {record['version']} in {environment} "
            f"at {record['at']}, which a run stopped before writing"]


# The audit record that describes a lock entry: record key -> Release field.
_RECORDS_ENTRY = {"version": "version", "action": "action", "at": "promoted_at", "by": "promoted_by",
                  "commit": "commit"}


def _missing_audit(root: Path, lock: lockfile.Lock, environment: str, prompt_id: str) -> dict[str, Any] | None:
    """The audit record of the release ``environment`` holds for ``prompt_id``, when the log's last record for
    them is not it: the lock is written first and the line last, so a run killed in between leaves it out."""
    entry = lock.entry(environment, prompt_id)
    if entry is None:
        return None
    records = [r for r in lockfile.read_audit(root / lockfile.AUDIT_LOG, lockfile.AUDIT_LOG)
               if r.get("environment") == environment and r.get("prompt") == prompt_id]
    last = records[-1] if records else None
    if last is not None and all(last.get(key) == getattr(entry, field) for key, field in _RECORDS_ENTRY.items()):
        return None
    # What the environment held before is what the log last recorded for it.
    outcome = ReleaseOutcome(Action(entry.action), prompt_id, environment, entry.version,
                             last.get("version") if last else None)
    return {**_audit_record(outcome, entry), "recovered": True}


def _audit_record(outcome: ReleaseOutcome, entry: Release) -> dict[str, Any]:
    return {"at": entry.promoted_at, "by": entry.promoted_by, "action": outcome.action,
            "prompt": outcome.prompt_id, "environment": outcome.environment, "version": outcome.version,
            "previous": outcome.previous, "commit": entry.commit, "forced": entry.forced,
            "overridden": list(entry.overridden), "reason": entry.reason, "evidence": entry.evidence}


def _git_commit(root: Path, outcome: ReleaseOutcome) -> str:
    """Commit exactly the lock, the audit log and the version's snapshot (forced past .gitignore: asked for)."""
    paths = [str(p) for p in outcome.files]
    verb = "roll back" if outcome.action is Action.ROLLBACK else "promote"
    message = f"promptops: {verb} {outcome.prompt_id} {outcome.version} in {outcome.environment}"
    try:
        return git.commit_only(root, paths, message)
    except git.GitError as exc:
        raise ReleaseError(f"{verb} recorded in {', '.join(paths)}, but {exc}; commit those files yourself") from None
