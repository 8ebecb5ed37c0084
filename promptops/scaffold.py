"""`promptops init`: copy the starter project from templates/init/ into a folder.

A plain function over files: it returns what it wrote and what it left alone,
and never prints. Existing files are never overwritten unless asked (force),
because init is often run in a repository that already has a pre-commit
config or a workflow of its own. A .gitignore is never overwritten, even with
force: the lines it lacks are appended to it instead.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from promptops import resources
from promptops.errors import UsageError

# Files in templates/init/ that are not part of the scaffold.
_IGNORED_NAMES = frozenset({"__init__.py", "__pycache__", ".DS_Store"})
# GitHub and pre-commit read these only at the top of a repository.
_ROOT_ONLY = (PurePosixPath(".pre-commit-config.yaml"), PurePosixPath(".github/workflows/promptops.yml"))
# Merged line by line into the user's own file rather than replaced.
_GITIGNORE = PurePosixPath(".gitignore")
# A line in the user's .gitignore that ignores the whole folder, release snapshots and audit log included.
_WHOLE_STATE_FOLDER = frozenset({".promptops", ".promptops/", "/.promptops", "/.promptops/"})


class ScaffoldError(UsageError):
    """The target cannot receive the scaffold (a file where a folder must go, no permission)."""

    program = "promptops init"


@dataclass
class ScaffoldResult:
    """What init did, as paths relative to the target folder."""

    target: Path
    created: list[PurePosixPath] = field(default_factory=list)
    overwritten: list[PurePosixPath] = field(default_factory=list)
    appended: list[PurePosixPath] = field(default_factory=list)  # existed; the lines it lacked were added
    unchanged: list[PurePosixPath] = field(default_factory=list)  # existed with the template's content
    skipped: list[PurePosixPath] = field(default_factory=list)  # existed with other content; kept
    notes: list[str] = field(default_factory=list)


def template_root() -> Path:
    return resources.data_dir("templates") / "init"


def template_files() -> list[PurePosixPath]:
    """Every file of the scaffold, relative to templates/init/, sorted."""
    root = template_root()
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED_NAMES)
        for name in files:
            if name not in _IGNORED_NAMES and not name.endswith((".pyc", ".pyo")):
                found.append(PurePosixPath(Path(folder, name).relative_to(root).as_posix()))
    return sorted(found)


def scaffold(target: Path, *, force: bool = False, repo_root: Path | None = None) -> ScaffoldResult:
    """Copy the starter project into ``target`` (created if missing).

    Files that already exist are skipped, or replaced when ``force`` is set.
    Every destination is checked before anything is written, so a conflict
    leaves the folder as it was. ``repo_root`` is the top of the git
    repository around ``target``, if any; when it differs from ``target`` a
    note says where the CI files must live.
    """
    _prepare(target)
    result = ScaffoldResult(target=target)
    source_root = template_root()
    plan = [(relative, (source_root / relative).read_bytes()) for relative in template_files()]
    for relative, _ in plan:
        _check_destination(target, relative)
    for relative, content in plan:
        if relative == _GITIGNORE:
            _merge_gitignore(target, content, result)
        else:
            _place(target, relative, content, force, result)
    result.notes.extend(_placement_notes(target, repo_root))
    return result


def _prepare(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target} exists and is not a folder")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScaffoldError(f"cannot create {target}: {exc.strerror or exc}") from exc


def _check_destination(target: Path, relative: PurePosixPath) -> None:
    """Refuse a folder where a file goes, or a file where a folder goes."""
    current = target
    for part in relative.parts[:-1]:
        current = current / part
        if os.path.lexists(current) and not current.is_dir():
            raise ScaffoldError(f"{current} is a file, but {relative} needs it to be a folder; move it away")
    destination = target.joinpath(*relative.parts)
    if destination.is_dir() and not destination.is_symlink():
        raise ScaffoldError(f"{destination} is a folder, but init writes a file there; move it away")


def _place(target: Path, relative: PurePosixPath, content: bytes, force: bool, result: ScaffoldResult) -> None:
    destination = target.joinpath(*relative.parts)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        if _create(destination, content):
            result.created.append(relative)
        elif _same_content(destination, content):
            result.unchanged.append(relative)
        elif force:
            _replace(destination, content)
            result.overwritten.append(relative)
        else:
            result.skipped.append(relative)
    except OSError as exc:
        raise ScaffoldError(f"cannot write {destination}: {exc.strerror or exc}") from exc


def _merge_gitignore(target: Path, content: bytes, result: ScaffoldResult) -> None:
    """Create the .gitignore, or append the patterns it lacks (with the template's comment) to the user's own."""
    destination = target / _GITIGNORE
    try:
        if _create(destination, content):
            result.created.append(_GITIGNORE)
            return
        if destination.is_symlink() or not destination.is_file():
            result.skipped.append(_GITIGNORE)  # never write through a link to somewhere else
            return
        existing = destination.read_bytes().decode("utf-8", "surrogateescape")
        template = content.decode("utf-8")
        present = {line.strip() for line in existing.splitlines()}
        missing = [line for line in _patterns(template) if line not in present]
        if present & _WHOLE_STATE_FOLDER:
            result.notes.append(_whole_folder_note(destination))
        if not missing:
            result.unchanged.append(_GITIGNORE)
            return
        comment = [line for line in template.splitlines() if line.startswith("#")]
        # A blank line after the user's last line, which may lack its newline.
        separator = "" if not existing else "\n" if existing.endswith("\n") else "\n\n"
        addition = separator + "\n".join(comment + missing) + "\n"
        with open(destination, "ab") as handle:
            handle.write(addition.encode("utf-8"))
        result.appended.append(_GITIGNORE)
    except OSError as exc:
        raise ScaffoldError(f"cannot write {destination}: {exc.strerror or exc}") from exc


def _patterns(gitignore: str) -> list[str]:
    return [line.strip() for line in gitignore.splitlines() if line.strip() and not line.startswith("#")]


def _whole_folder_note(gitignore: Path) -> str:
    return (f"{gitignore} ignores the whole .promptops/ folder, but its releases/ and audit.log record "
            f"promotions and must be committed: remove that line; the lines init added ignore only local files.")


def _create(path: Path, content: bytes) -> bool:
    """Write a new file; False if something appeared there meanwhile (never clobber)."""
    try:
        with open(path, "xb") as handle:
            handle.write(content)
    except FileExistsError:
        return False
    return True


def _same_content(path: Path, content: bytes) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    try:
        return path.read_bytes() == content
    except OSError:
        return False


def _replace(path: Path, content: bytes) -> None:
    """Swap in the new file atomically; a symlink is replaced, never written through."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        if path.exists() and not path.is_symlink():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        else:
            os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _placement_notes(target: Path, repo_root: Path | None) -> list[str]:
    if repo_root is None or repo_root.resolve() == target.resolve():
        return []
    where = ", ".join(str(p) for p in _ROOT_ONLY)
    return [
        f"{target} is not the top of its git repository ({repo_root}): GitHub and pre-commit "
        f"read {where} only at the top, so move them there."
    ]
