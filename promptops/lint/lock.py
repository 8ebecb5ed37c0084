"""PO13x: promptops.lock.yaml, which only promptops writes, and the release snapshots it points at."""

from __future__ import annotations

from collections.abc import Iterator

from promptops import lockfile
from promptops.codes import INVALID_LOCK
from promptops.lint.project import LintProject
from promptops.lint.registry import Hit, hit, rule
from promptops.loader import display_path
from promptops.specs import ProjectConfig, Source


def _lock(project: LintProject) -> tuple[lockfile.Lock | None, Source, list[Hit]] | None:
    """The project's lock (beside promptops.yaml), or None when there is none; parsed once per run."""
    if "_lock" not in project.__dict__:
        path = project.root / lockfile.LOCK_NAME
        parsed = None
        if path.is_file():
            lock, source, findings = lockfile.parse_lock(path, display_path(path, project.loader.display_base))
            parsed = (lock, source, [Hit(source, f.line, f.col, f.message) for f in findings])
        project.__dict__["_lock"] = parsed
    cached: tuple[lockfile.Lock | None, Source, list[Hit]] | None = project.__dict__["_lock"]
    return cached


@rule(INVALID_LOCK, "invalid-lock", "config")
def invalid_lock(config: ProjectConfig, project: LintProject) -> Iterator[Hit]:
    """promptops.lock.yaml cannot be read or does not match schemas/lock.schema.json:
    broken YAML, an unknown key, a version that is not a 12-digit hash. Only
    promptops promote, rollback and export write it; restore it from git.

    Fails:   environments: {prod: {support.answer: {version: latest, commit: ...}}}
    Passes:  environments: {prod: {support.answer: {version: 3f2a9c1b7d4e, commit: <40 hex>, ...}}}
    """
    parsed = _lock(project)
    if parsed is not None:
        yield from parsed[2]


@rule("PO131", "lock-snapshot-mismatch", "config")
def lock_snapshot_mismatch(config: ProjectConfig, project: LintProject) -> Iterator[Hit]:
    """A lock entry (current or in its history) points at a version whose release
    snapshot (.promptops/releases/ID/VERSION.json) is missing, is for another
    prompt, or whose content no longer hashes to that version: the lock or the
    snapshot was edited by hand, and apps would load something nobody promoted.

    Fails:   prod: {support.answer: {version: 000000000000, ...}}   with no 000000000000.json
    Passes:  every version in the lock has its snapshot, unchanged since promotion.
    """
    parsed = _lock(project)
    lock = parsed[0] if parsed is not None else None
    if lock is None:
        return
    source = lock.source
    seen: dict[tuple[str, str], str | None] = {}
    for environment, prompts in lock.environments.items():
        for prompt_id, entry in prompts.items():
            releases = [((), entry), *((("history", i), old) for i, old in enumerate(entry.history))]
            for where, release in releases:
                key = (prompt_id, release.version)
                if key not in seen:
                    path = lockfile.snapshot_path(lock.releases_dir, prompt_id, release.version)
                    shown = display_path(path, project.loader.display_base)
                    seen[key] = lockfile.snapshot_problem(path, prompt_id, release.version, shown)[1]
                if seen[key]:
                    path_in_lock = ("environments", environment, prompt_id, *where, "version")
                    yield hit(source, path_in_lock, f"{environment}/{prompt_id}: {seen[key]}")
