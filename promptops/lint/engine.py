"""Run the rules over a set of files and settle severities and suppressions."""

from __future__ import annotations

import difflib
import fnmatch
import functools
import itertools
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from promptops import git
from promptops.codes import INVALID_VALUE
from promptops.config import guarded_by, path_problems
from promptops.discover import discover, excluded, find_config
from promptops.findings import Finding, Severity, dotted
from promptops.lint.project import LintProject
from promptops.lint.registry import RULES, LintRule, all_rules, find_rule
from promptops.loader import MAX_SCHEMA_ERRORS, Loaded, Loader, Spec, display_path
from promptops.model.lint import LintRun
from promptops.specs import (
    CONFIG_NAME,
    EVAL_SUFFIX,
    PROMPT_SUFFIX,
    RETRIEVAL_SUFFIX,
    EvalSuiteSpec,
    ProjectConfig,
    PromptSpec,
    RetrievalSpec,
    kind_of,
)
from promptops.yamlparse import JsonPath

# A file past this many findings gets one more that counts the rest: output stays small and fast.
MAX_FINDINGS_PER_FILE = 100

_DIRECTIVE = re.compile(r"#\s*promptops:\s*(disable|disable-next-line|disable-file)\s*=\s*([A-Za-z0-9_,\s-]+)")


def lint(paths: Iterable[Path], cwd: Path | None = None, trusted: ProjectConfig | None = None) -> LintRun:
    """Lint the given files and folders (default: the project around ``cwd``).

    Each file belongs to the project of the nearest promptops.yaml above it,
    so one call can lint several projects (a monorepo, or ``examples/``).
    ``trusted``: the base ref's config in a pull-request check; its project
    takes the settings that guard the run from it (``config.guarded_by``).
    """
    cwd = (cwd or Path.cwd()).resolve()
    run = empty_run()
    targets = [cwd / p for p in paths] or [cwd]
    for config_path, files in _group_by_project(targets, cwd).items():
        root = config_path.parent if config_path else (git.toplevel(cwd) or cwd)
        whole = any(t.is_dir() and root.resolve().is_relative_to(t.resolve()) for t in targets)
        _lint_project(config_path, root, files, whole, cwd, run, trusted)
    run.findings = _capped(sorted(run.findings), run.incomplete)
    run.config_errors = _capped(sorted(run.config_errors), run.incomplete)
    return run


def empty_run() -> LintRun:
    """A run with no file looked at yet, that knows every rule (the reports name and list them)."""
    all_rules()
    return LintRun(rules=RULES)


_SPECS = f"*{PROMPT_SUFFIX}, *{RETRIEVAL_SUFFIX} or *{EVAL_SUFFIX}"
_KINDS = f"{CONFIG_NAME}, {_SPECS}"


def not_promptops_files(paths: Iterable[Path]) -> list[Path]:
    """Files named that lint leaves alone, by their name (README.md, notes.yaml)."""
    return [path for path in paths if not path.is_dir() and not kind_of(path)]


def nothing_to_lint(paths: list[Path], cwd: Path) -> str:
    """Why a run checked no file: what was searched, and whether a promptops.yaml is there."""
    if paths:
        where = ", ".join(map(str, paths))
        return f"nothing to lint in {where}: no {_KINDS} file there"
    config = find_config(cwd)
    if config is None:
        return (f"nothing to lint: {cwd} holds no {CONFIG_NAME} (nor does a folder above it) and no {_SPECS} "
                "file; `promptops init` scaffolds a project there")
    return f"nothing to lint in {cwd}: no {_SPECS} file in it (the project's {CONFIG_NAME} is {config})"


def outside_projects(paths: Iterable[Path]) -> list[Path]:
    """Files named that no promptops.yaml in their folder or above claims."""
    return [path for path in paths if kind_of(path) and _nearest_config(os.path.dirname(os.path.abspath(path))) is None]


def _capped(findings: list[Finding], incomplete: set[str]) -> list[Finding]:
    """Sorted findings, at most MAX_FINDINGS_PER_FILE a file, then one that counts the rest."""
    kept: list[Finding] = []
    for path, group in itertools.groupby(findings, key=lambda f: f.path):
        of_file = list(group)
        kept.extend(of_file[:MAX_FINDINGS_PER_FILE])
        if len(of_file) > MAX_FINDINGS_PER_FILE:
            kept.append(_rest(of_file[MAX_FINDINGS_PER_FILE:], path in incomplete))
    return kept


def _rest(hidden: list[Finding], incomplete: bool) -> Finding:
    """One finding, where the hidden ones start, that counts them (an error if any of them is)."""
    first = hidden[0]
    if incomplete:  # the loader stopped looking: the count would understate
        message = (f"and more findings in this file, not shown: lint lists the first {MAX_FINDINGS_PER_FILE} "
                   f"of a file and stops looking for schema errors after {MAX_SCHEMA_ERRORS:,}")
    else:
        codes = ", ".join(f"{code} x{count:,}" for code, count in Counter(f.code for f in hidden).most_common(3))
        message = (f"and {len(hidden):,} more findings in this file ({codes}), not shown: "
                   f"lint lists the first {MAX_FINDINGS_PER_FILE} of a file")
    severity = Severity.ERROR if any(f.severity is Severity.ERROR for f in hidden) else Severity.WARNING
    return Finding(first.path, first.line, first.col, first.code, message, severity)


def _group_by_project(targets: list[Path], cwd: Path) -> dict[Path | None, list[Path]]:
    groups: dict[Path | None, list[Path]] = {}
    for path in discover(cwd, targets):
        config = _nearest_config(os.path.dirname(path))
        groups.setdefault(config, []).append(path)
    for target in targets:  # a project with a config is linted even when it holds nothing else
        config = _nearest_config(str(target if target.is_dir() else target.parent))
        if config is not None:
            groups.setdefault(config, [])
    return groups


@functools.lru_cache(maxsize=1024)
def _nearest_config(folder: str) -> Path | None:
    return find_config(Path(folder))


def _lint_project(
    config_path: Path | None, root: Path, files: list[Path], whole: bool, cwd: Path, run: LintRun,
    trusted: ProjectConfig | None = None,
) -> None:
    loader = Loader(root, display_base=cwd)
    config = ProjectConfig(root=root, raw={})
    loaded: dict[Path, Loaded] = {}
    guarded = trusted is not None and trusted.root == root
    # promptops.yaml counts as named when it was named or found in a folder named; else it is read for its settings.
    config_named = config_path is not None and any(
        kind_of(path) == "config" and path.resolve() == config_path for path in files)
    if config_path is not None:
        config_loaded = loader.load(config_path)
        loaded[config_path] = config_loaded
        problems = list(config_loaded.findings) or path_problems(config_loaded.spec)  # type: ignore[arg-type]
        if problems and not guarded:
            run.count(config_named)
            run.config_errors.extend(problems)
            _note_incomplete(config_loaded, run)
            return
        if problems:
            # In a pull-request check the head's promptops.yaml is one more file under check: its
            # problems are findings, and the rest is linted with the base's settings.
            del loaded[config_path]
            run.count(config_named)
            run.findings.extend(problems)
            _note_incomplete(config_loaded, run)
            config = trusted  # type: ignore[assignment]
        else:
            config = config_loaded.spec  # type: ignore[assignment]
    if guarded:
        config = guarded_by(config, trusted)  # type: ignore[arg-type]
    settings = _Settings(config, cwd)
    if settings.problems:
        run.count(config_named)
        run.config_errors.extend(settings.problems)
        return
    exclude = config.paths.exclude
    for path in files:
        if path not in loaded and not (whole and excluded(path, root, exclude)):
            loaded[path] = loader.load(path)
    project = LintProject(config, loader, loaded, whole_project=whole)
    project.prefetch(_referenced_ids(loaded.values()))
    for path, item in loaded.items():
        run.count(config_named if path == config_path else True)
        found = list(item.findings) + list(_rule_findings(item, project))
        run.findings.extend(settings.apply(found, item))
        _note_incomplete(item, run)
    for suite in project.dependent_suites():  # what the linted prompts' changes may break
        run.count(False)
        run.findings.extend(settings.apply(list(_rule_findings(suite, project, scopes={"eval"})), suite))


def _note_incomplete(item: Loaded, run: LintRun) -> None:
    if item.incomplete:
        run.incomplete.add(item.source.display)


def _referenced_ids(items: Iterable[Loaded]) -> set[tuple[str, str]]:
    """The (kind, id) pairs that rules will look up: the files' own ids and what they refer to."""
    wanted: set[tuple[str, str]] = set()
    for item in items:
        spec = item.spec
        if isinstance(spec, PromptSpec):
            wanted.add(("prompt", spec.id))
            if spec.retrieval_config:
                wanted.add(("retrieval", spec.retrieval_config))
        elif isinstance(spec, RetrievalSpec):
            wanted.add(("retrieval", spec.id))
        elif isinstance(spec, EvalSuiteSpec):
            wanted.add(("prompt", spec.prompt))
    return wanted


def _rule_findings(item: Loaded, project: LintProject, scopes: set[str] | None = None) -> Iterable[Finding]:
    for rule in RULES.values():
        if rule.find_hits is None or (scopes is not None and rule.scope not in scopes):
            continue
        subject: Loaded | Spec | None
        if rule.scope == "file":
            subject = item if item.source.text else None
        else:
            subject = item.spec if rule.scope == item.kind else None
        if subject is None:
            continue
        for found in rule.find_hits(subject, project):
            yield Finding(found.source.display, found.line, found.col, rule.code, found.message, rule.severity)


class _Settings:
    """Severities from promptops.yaml, per-file ignores, and inline directives."""

    def __init__(self, config: ProjectConfig, cwd: Path) -> None:
        self.problems: list[Finding] = []  # rule names or codes that do not exist
        self.severity: dict[str, str] = {}
        for key, level in config.lint.rules.items():
            rule = self._rule(config, key, ("lint", "rules", key))
            if rule:
                self.severity[rule.code] = "off" if level is False else level  # YAML 1.1 reads off as false
        self.per_file = dict(config.lint.per_file_ignores)
        for pattern, codes in self.per_file.items():
            for index, code in enumerate(codes):
                self._rule(config, code, ("lint", "per_file_ignores", pattern, index))
        self.root = config.root
        self.cwd = cwd

    def _rule(self, config: ProjectConfig, name: str, path: JsonPath) -> LintRule | None:
        rule = find_rule(name)
        if rule is None and config.source is not None:
            known = [r.code for r in RULES.values()] + [r.name for r in RULES.values()]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            line, col = config.source.where(path, key=isinstance(path[-1], str))
            message = (f"{dotted(path[:-1])}: no rule '{name}'{hint}; "
                       "`promptops lint --explain CODE` lists what each does")
            self.problems.append(Finding(config.source.display, line, col, INVALID_VALUE, message, Severity.ERROR))
        return rule

    def apply(self, findings: list[Finding], item: Loaded) -> list[Finding]:
        directives = _Directives(item.source.text)
        kept = []
        for finding in findings:
            level = self.severity.get(finding.code)
            if level == "off" or self._ignored(finding):
                continue
            if finding.path == item.source.display and directives.suppresses(finding):
                continue
            if level:
                finding = Finding(finding.path, finding.line, finding.col, finding.code, finding.message,
                                  Severity(level))
            kept.append(finding)
        return kept

    def _ignored(self, finding: Finding) -> bool:
        if not self.per_file:
            return False
        relative = display_path((self.cwd / finding.path).resolve(), self.root)
        return any(finding.code in codes and fnmatch.fnmatch(relative, glob) for glob, codes in self.per_file.items())


class _Directives:
    """``# promptops: disable=PO203`` (this line), ``disable-next-line=``, ``disable-file=``."""

    def __init__(self, text: str) -> None:
        self.file: set[str] = set()
        self.lines: dict[int, set[str]] = {}
        if "promptops:" not in text:
            return
        for number, line in enumerate(text.splitlines(), start=1):
            for kind, names in _DIRECTIVE.findall(line):
                codes = {rule.code for rule in map(find_rule, re.split(r"[,\s]+", names.strip())) if rule}
                if kind == "disable-file":
                    self.file |= codes
                else:
                    self.lines.setdefault(number + (kind == "disable-next-line"), set()).update(codes)

    def suppresses(self, finding: Finding) -> bool:
        return finding.code in self.file or finding.code in self.lines.get(finding.line, ())


