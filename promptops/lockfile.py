"""The files environments live in: the lock, the release snapshots and the audit log.

Below the stages that use them: lint (PO130, PO131), the runtime loader and
`promptops promote` all read and write through here, and none of them may pull
in GitPython or litellm. The lock's entries are read once into ``Release``
objects, and written back from them.

- ``promptops.lock.yaml`` (beside promptops.yaml): environment -> prompt id ->
  the release it holds, validated against schemas/lock.schema.json.
- ``.promptops/releases/<id>/<version>.json``: the prompt's parsed content
  whole, content-addressed by its version and never rewritten.
- ``.promptops/audit.log``: one JSON line per promotion or rollback, appended.

Writers hold an exclusive file lock (``.promptops/lock``) and replace the lock
file atomically, so two promotions at once never lose each other's entry.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from promptops import git
from promptops.codes import INVALID_LOCK, NOT_A_MAPPING
from promptops.errors import UsageError
from promptops.findings import Finding
from promptops.loader import SchemaValidator, decode_text
from promptops.specs import Source, content_version
from promptops.yamlparse import JsonPath, YamlError, parse

LOCK_NAME = "promptops.lock.yaml"
RELEASES = ".promptops/releases"
AUDIT_LOG = ".promptops/audit.log"
MUTEX = ".promptops/lock"
MUTEX_TIMEOUT_S = 120.0
HISTORY_KEPT = 20  # previous releases per environment and prompt; the audit log keeps everything
HEADER = (
    "# Written by promptops (promote, rollback, export): do not edit by hand.\n"
    "# Which version of each prompt every environment holds; see `promptops status`.\n"
)


class LockError(UsageError):
    """The lock, a snapshot or the audit log cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Release:
    """One version of a prompt that an environment holds, or held (an item of ``history``)."""

    version: str
    commit: str
    promoted_at: str
    promoted_by: str
    action: str  # promote or rollback
    source: str | None = None  # the prompt file at that commit; absent in locks that did not record it
    forced: bool = False
    reason: str | None = None
    evidence: dict[str, Any] | None = None
    overridden: tuple[str, ...] = ()
    history: tuple[Release, ...] = ()  # most recent first; only on what an environment holds now

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Release:
        """From a schema-valid entry of the lock."""
        return cls(data["version"], data["commit"], data["promoted_at"], data["promoted_by"], data["action"],
                   data.get("source"), data.get("forced", False), data.get("reason"), data.get("evidence"),
                   tuple(data.get("overridden") or ()), tuple(cls.from_data(old) for old in data.get("history") or ()))

    def without_history(self) -> Release:
        return replace(self, history=())

    def to_data(self, history: bool = True) -> dict[str, Any]:
        """The entry as the lock writes it; ``history=False`` for a history item or an exported bundle."""
        data: dict[str, Any] = {"version": self.version, "commit": self.commit}
        if self.source is not None:
            data["source"] = self.source
        data.update(promoted_at=self.promoted_at, promoted_by=self.promoted_by, action=self.action,
                    forced=self.forced, reason=self.reason, evidence=self.evidence)
        if self.overridden:
            data["overridden"] = list(self.overridden)
        if history:
            data["history"] = [old.to_data(history=False) for old in self.history]
        return data


@dataclass(frozen=True)
class Lock:
    """A parsed, schema-valid lock file (empty when the file does not exist)."""

    path: Path
    source: Source
    environments: dict[str, dict[str, Release]] = field(default_factory=dict)  # environment -> prompt id -> release
    releases: str | None = None  # the snapshots' folder as the file names it; None: the default
    schema: str | None = None  # the file's "$schema" pointer, for editors

    @classmethod
    def from_data(cls, path: Path, source: Source, data: Mapping[str, Any]) -> Lock:
        """From a schema-valid lock's data."""
        environments = {environment: {prompt_id: Release.from_data(entry) for prompt_id, entry in held.items()}
                        for environment, held in data["environments"].items()}
        return cls(path, source, environments, data.get("releases"), data.get("$schema"))

    @property
    def releases_dir(self) -> Path:
        return self.path.parent / (self.releases or RELEASES)

    def entry(self, environment: str, prompt_id: str) -> Release | None:
        return self.environments.get(environment, {}).get(prompt_id)

    def hold(self, environment: str, prompt_id: str, release: Release) -> None:
        self.environments.setdefault(environment, {})[prompt_id] = release

    def where(self, path: JsonPath) -> str:
        line, col = self.source.where(path)
        return f"{self.source.display}:{line}:{col}"

    def text(self) -> str:
        return dump_lock(self.environments, self.releases, self.schema)


def parse_lock(path: Path, display: str) -> tuple[Lock | None, Source, list[Finding]]:
    """The lock and where each value sits, or the findings (schema codes) that say why not."""
    try:
        text, problem = decode_text(path.read_bytes(), display)
    except OSError as exc:
        unreadable = Finding(display, 1, 1, INVALID_LOCK, f"cannot be read: {exc.strerror or exc}")
        return None, Source(path, display), [unreadable]
    if problem:
        return None, Source(path, display), [problem]
    try:
        data, positions = parse(text or "")
    except YamlError as exc:
        finding = Finding(display, exc.line, exc.col, exc.code, exc.message)
        return None, Source(path, display, text=text or ""), [finding]
    source = Source(path, display, positions, text or "")
    if not isinstance(data, dict):
        return None, source, [Finding(display, 1, 1, NOT_A_MAPPING, "the lock is empty or not a mapping")]
    findings = SchemaValidator().findings("lock", data, source)
    return (None if findings else Lock.from_data(path, source, data)), source, findings


def read_lock(path: Path, display: str | None = None) -> Lock:
    """The lock at ``path``; raises LockError naming the file and line when it is unusable."""
    display = display or str(path)
    if not path.exists():
        return Lock(path, Source(path, display))
    lock, _, findings = parse_lock(path, display)
    if lock is None:
        details = "\n".join(f"  {f}" for f in findings[:5])
        raise LockError(f"{display} is not a valid lock file (it is written only by promptops; restore it "
                        f"from git, e.g. `git checkout -- {path.name}`):\n{details}")
    return lock


def dump_lock(environments: Mapping[str, Mapping[str, Release]], releases: str | None = None,
              schema: str | None = None, history: bool = True) -> str:
    """The lock's text; ``history=False`` leaves out what the environments held before (a bundle)."""
    import yaml

    data: dict[str, Any] = {} if schema is None else {"$schema": schema}
    data["schema_version"] = 1
    if releases is not None:
        data["releases"] = releases
    data["environments"] = {environment: {prompt_id: release.to_data(history) for prompt_id, release in held.items()}
                            for environment, held in environments.items()}
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    return HEADER + body


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder, then rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False, encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.chmod(out.name, 0o666 & ~_umask())  # a temporary file is private (0600); the lock is not
        os.replace(out.name, path)
    except BaseException:
        os.unlink(out.name)
        raise


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


# --- release snapshots ---------------------------------------------------------------------------

def snapshot_path(releases_dir: Path, prompt_id: str, version: str) -> Path:
    return releases_dir / prompt_id / f"{version}.json"


def make_snapshot(prompt_id: str, version: str, commit: str, source: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": 1, "id": prompt_id, "version": version, "commit": commit, "source": source,
            "spec": spec}


def snapshot_text(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def snapshot_problem(path: Path, prompt_id: str, version: str,
                     shown: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """The snapshot of ``prompt_id`` at ``version``, or why it cannot be trusted (``shown``: the path to print)."""
    shown = shown or str(path)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, f"no release snapshot for version {version} ({shown} does not exist)"
    except (OSError, ValueError) as exc:
        return None, f"release snapshot {shown} is unreadable: {exc}"
    if not isinstance(data, dict) or not SchemaValidator().is_valid("release", data):
        return None, f"release snapshot {shown} does not match release.schema.json"
    if data["id"] != prompt_id or data["spec"].get("id") != prompt_id:
        return None, f"release snapshot {shown} is for '{data['spec'].get('id')}', not '{prompt_id}'"
    actual = content_version(data["spec"])
    if data["version"] != version or actual != version:
        return None, f"release snapshot {shown} was altered: its content hashes to {actual}, not {version}"
    return data, None


def read_snapshot(releases_dir: Path, prompt_id: str, version: str) -> dict[str, Any]:
    data, problem = snapshot_problem(snapshot_path(releases_dir, prompt_id, version), prompt_id, version)
    if problem:
        raise LockError(problem)
    return data  # type: ignore[return-value]


def write_snapshot(releases_dir: Path, snapshot: dict[str, Any]) -> Path | None:
    """Write a snapshot once; the path if it was created, None if the same content was already there.

    Raises LockError when a different content sits at that version: snapshots are immutable.
    """
    path = snapshot_path(releases_dir, snapshot["id"], snapshot["version"])
    if path.exists():
        existing, problem = snapshot_problem(path, snapshot["id"], snapshot["version"])
        if problem:
            raise LockError(f"{problem}; refusing to overwrite it (snapshots are immutable)")
        return None
    write_atomic(path, snapshot_text(snapshot))
    return path


# --- audit log -----------------------------------------------------------------------------------

def append_audit(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line (O_APPEND), whole or not at all: a line cut short by a full disk is taken back
    (under the mutex nobody else appended since), so the log always parses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        before = os.fstat(descriptor).st_size
        try:
            if os.write(descriptor, line) != len(line):
                raise OSError(errno.ENOSPC, "the line was cut short", str(path))
            os.fsync(descriptor)
        except BaseException:
            os.ftruncate(descriptor, before)
            raise
    finally:
        os.close(descriptor)


def read_audit(path: Path, display: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")  # not splitlines: U+2028 is text
    except OSError as exc:
        raise LockError(f"{display} cannot be read: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, or a number too long to convert
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise LockError(f"{display}:{number}: not a JSON line ({reason}); the audit log is written "
                            "only by promptops") from None
        if not isinstance(record, dict):
            raise LockError(f"{display}:{number}: not a JSON object")
        records.append(record)
    return records


# --- who, when, and one writer at a time -----------------------------------------------------------

def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def who(root: Path) -> str:
    """$GITHUB_ACTOR in Actions, else git's identity (user.name <user.email>, or GIT_AUTHOR_*), else the OS user."""
    actor = os.environ.get("GITHUB_ACTOR")
    if actor:
        return actor
    author = git.author(root)  # None without git: a deployment box rolling back
    if author:
        return author
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


@contextlib.contextmanager
def exclusive(root: Path, timeout_s: float = MUTEX_TIMEOUT_S) -> Iterator[None]:
    """One writer of the lock, snapshots and audit log at a time, across processes."""
    from filelock import FileLock, Timeout

    mutex = root / MUTEX
    try:
        mutex.parent.mkdir(parents=True, exist_ok=True)
        held = FileLock(str(mutex), timeout=timeout_s)
        held.acquire()
    except Timeout:
        raise LockError(f"another promotion has held {mutex} for {timeout_s:g} s; try again when it ends") from None
    except OSError as exc:  # a read-only checkout: nothing can be recorded there
        raise LockError(f"cannot take the lock {mutex}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        held.release()
