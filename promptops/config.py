"""A whole project loaded at once: its promptops.yaml and every spec, by id.

Lint loads files lazily for speed; commands that work on the project as a
whole (render now; cost, eval and promote later) start from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptops.discover import discover, excluded, project_root
from promptops.findings import Finding
from promptops.loader import Loader
from promptops.specs import EvalSuiteSpec, ProjectConfig, PromptSpec, RetrievalSpec, kind_of


class ConfigError(Exception):
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


def load_workspace(
    start: Path,
    *,
    files: Any = None,
    root: Path | None = None,
    config_path: Path | None = None,
    candidates: list[Path] | None = None,
    label: str = "",
) -> Workspace:
    """Every spec of the project around ``start``; raises ConfigError for a broken promptops.yaml.

    By default files come from the work tree; gitrefs passes a commit's files,
    its root and config, and the candidate spec files instead.
    """
    if root is None:
        root, config_path = project_root(start)
    loader = Loader(root, display_base=Path.cwd(), files=files)
    config = ProjectConfig(root=root, raw={})
    if config_path is not None:
        loaded = loader.load(config_path)
        if loaded.findings:
            raise ConfigError(loaded.findings)
        config = loaded.spec  # type: ignore[assignment]
    workspace = Workspace(config=config, label=label)
    exclude = config.section("paths").get("exclude") or []
    include = [root / p for p in config.section("paths").get("include") or []]
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


def _under_any(path: Path, folders: list[Path]) -> bool:
    return any(path.is_relative_to(folder) for folder in folders)
