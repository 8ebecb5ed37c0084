"""A whole project loaded at once: its promptops.yaml and every spec, by id.

Lint loads files lazily for speed; commands that work on the project as a
whole (render now; cost, eval and promote later) start from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from promptops.codes import INVALID_VALUE
from promptops.discover import discover, escapes, excluded, project_root
from promptops.errors import UsageError
from promptops.findings import Finding, Severity
from promptops.loader import Loader
from promptops.specs import EvalSuiteSpec, ProjectConfig, PromptSpec, RetrievalSpec, kind_of

# Settings that guard the run rather than describe the prompts: what a template may spend (render limits),
# which files are read (paths), where the cache is written and how many calls, how long, at what cost (eval).
# In a pull-request check they come from the base ref: the head's promptops.yaml is the author's.
GUARDS: tuple[tuple[str, str | None], ...] = (("lint", "render_limits"), ("paths", None), ("eval", None))


class ConfigError(UsageError):
    """The project cannot be used as it is; ``findings`` say where and why."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("\n".join(map(str, findings)))
        self.findings = findings


@dataclass
class Workspace:
    config: ProjectConfig
    prompts: dict[str, PromptSpec] = field(default_factory=dict)
    retrievals: dict[str, RetrievalSpec] = field(default_factory=dict)
    suites: list[EvalSuiteSpec] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)  # files that did not load
    label: str = ""  # which ref this is, when it is not the working tree
    # The ref's files (gitrefs.GitTree); None: the working tree.
    files: Any = field(default=None, compare=False, repr=False)


def load_workspace(
    start: Path,
    *,
    files: Any = None,
    root: Path | None = None,
    config_path: Path | None = None,
    candidates: list[Path] | None = None,
    label: str = "",
    trusted: ProjectConfig | None = None,
    memo: dict[tuple[Any, ...], Any] | None = None,
) -> Workspace:
    """Every spec of the project around ``start``; raises ConfigError for a broken promptops.yaml, or one
    whose paths lead out of the project.

    By default files come from the work tree; gitrefs passes a commit's files,
    its root and config, and the candidate spec files instead. ``trusted`` (the
    base ref's config, in a pull-request check) supplies the settings that guard
    the run, whatever this promptops.yaml says (``guarded_by``). ``memo``: shared with the loading of
    another ref, each file that is the same at both is parsed once (``Loader.memo``).
    """
    if root is None:
        root, config_path = project_root(start)
    loader = Loader(root, display_base=Path.cwd(), files=files, memo=memo)
    config, problems = _project_config(loader, root, config_path)
    if problems:
        if trusted is None:
            raise ConfigError(problems)
        # A pull request's own promptops.yaml that cannot be used does not stop its check: the check
        # goes on with the base's settings, and lint reports what is wrong with the head's.
        config = replace(trusted, root=root)
    elif trusted is not None:
        config = guarded_by(config, trusted)
    workspace = Workspace(config=config, label=label, problems=list(problems), files=files)
    exclude = config.paths.exclude
    include = [root / p for p in config.paths.include]
    if candidates is None:
        candidates = discover(root, include, exclude)
    else:
        folders = include or [root]
        candidates = [p for p in candidates if _under_any(p, folders) and not excluded(p, root, exclude)]
    for path in candidates:
        if kind_of(path) == "config":
            continue
        loaded = loader.load(path)
        workspace.problems.extend(loaded.findings)
        spec = loaded.spec
        if isinstance(spec, PromptSpec):
            workspace.prompts.setdefault(spec.id, spec)
        elif isinstance(spec, RetrievalSpec):
            workspace.retrievals.setdefault(spec.id, spec)
        elif isinstance(spec, EvalSuiteSpec):
            workspace.suites.append(spec)
    return workspace


def _project_config(loader: Loader, root: Path, config_path: Path | None) -> tuple[ProjectConfig, list[Finding]]:
    """The project's promptops.yaml (the defaults when there is none), and why it cannot be used if it cannot."""
    config = ProjectConfig(root=root, raw={})
    if config_path is None:
        return config, []
    loaded = loader.load(config_path)
    if loaded.findings:
        return config, list(loaded.findings)
    from promptops.resultcache import DEFAULT_PATH  # here, not on lint's import path

    config = loaded.spec  # type: ignore[assignment]
    return config, path_problems(config, default_cache=DEFAULT_PATH)


def _under_any(path: Path, folders: list[Path]) -> bool:
    return any(path.is_relative_to(folder) for folder in folders)


def guarded_by(config: ProjectConfig, trusted: ProjectConfig) -> ProjectConfig:
    """``config`` with every setting in GUARDS as ``trusted`` has it (absent there: the default).

    Prices too, for every model the trusted side prices (its ``pricing:`` or litellm's price map):
    the spend cap reserves each call's worst case at them, and a change must not make a known model
    free to call. A price for a model nothing else knows stays (a change may bring a new fine-tune).
    """
    from promptops.models import ModelCatalog  # a data file, no litellm import

    raw = dict(config.raw)
    known = ModelCatalog(trusted.section("pricing"))
    pricing = {model: price for model, price in config.section("pricing").items() if known.get(model) is None}
    pricing.update(trusted.section("pricing"))
    if pricing:
        raw["pricing"] = pricing
    else:
        raw.pop("pricing", None)
    for section, key in GUARDS:
        if key is None:
            value = trusted.raw.get(section)
        else:
            value = {k: v for k, v in config.section(section).items() if k != key}
            if key in trusted.section(section):
                value[key] = trusted.section(section)[key]
        if value:
            raw[section] = value
        else:
            raw.pop(section, None)
    return replace(config, raw=raw)


def _inside_git(root: Path, relative: str) -> bool:
    """Whether a path in the project lies in .git, as written or once its symlinks are resolved (a committed
    `.promptops -> .git`)."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(real_root / relative))
    return ".git" in PurePosixPath(relative).parts or ".git" in real.relative_to(real_root).parts


def path_problems(config: ProjectConfig, default_cache: str | None = None) -> list[Finding]:
    """Paths in promptops.yaml that lead out of the project's folder, each a PO113 finding at its line.

    ``paths.include: ['/']`` would walk the file system and ``eval.cache: /tmp/x.db`` write a database
    anywhere. ``default_cache``, checked when eval.cache is not set, is for the commands that open
    the cache: a committed symlink in its path would move it out too.
    """
    source = config.source
    found: list[Finding] = []

    def problem(path: tuple[Any, ...], message: str) -> None:
        line, col = source.where(path) if source is not None else (1, 1)
        found.append(Finding(source.display if source else str(config.root), line, col, INVALID_VALUE, message,
                             Severity.ERROR))

    for index, folder in enumerate(config.paths.include):
        why = escapes(config.root, folder)
        if why:
            problem(("paths", "include", index), f"paths.include[{index}]: '{folder}' {why}; list folders "
                                                 "inside the project (relative to promptops.yaml)")
    for index, pattern in enumerate(config.paths.exclude):
        if PurePosixPath(pattern).is_absolute() or ".." in PurePosixPath(pattern).parts:
            problem(("paths", "exclude", index), f"paths.exclude[{index}]: '{pattern}' points out of the project; "
                                                 "patterns are relative to promptops.yaml")
    configured = config.eval.cache
    cache = configured or default_cache
    if cache:
        why = escapes(config.root, cache) or ("is inside .git" if _inside_git(config.root, cache) else None)
        if why:
            where = ("eval", "cache") if configured else ("eval",) if config.section("eval") else ()  # as written
            what = "eval.cache" if configured else "the eval cache's default path"
            problem(where, f"{what}: '{cache}' {why}; the cache must sit inside the project "
                           "(--cache FILE takes any path)")
    return found
