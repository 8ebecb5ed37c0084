"""Load what an environment holds, in an app: ``promptops.load("support.answer", env="prod")``.

Reads only the lock and the release snapshots: no git, no spec files, no
litellm until a call is made. Where to look, first match wins: ``bundle=`` (a
folder `promptops export` wrote), ``root=`` (a project folder), $PROMPTOPS_BUNDLE,
then promptops.lock.yaml in the current folder or one above it. An
environment or prompt the lock does not hold is an error, never a fallback.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptops import lockfile
from promptops.loader import SchemaValidator, build_prompt
from promptops.specs import PromptSpec, Source
from promptops.templating import RenderLimits, render_messages, validate_inputs

BUNDLE_ENV = "PROMPTOPS_BUNDLE"
BUNDLE_RELEASES = "releases"


class LoadError(LookupError):
    """The lock, the environment, the prompt or its snapshot cannot be had; the message says which and where."""


@dataclass(frozen=True)
class Prompt:
    """One promoted version of a prompt: render its messages, or call its model through litellm."""

    id: str
    version: str
    environment: str
    commit: str
    spec: PromptSpec = field(repr=False)
    limits: RenderLimits = field(default=RenderLimits(), repr=False)

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.spec.params)

    @property
    def inputs(self) -> dict[str, Any]:
        return dict(self.spec.inputs)

    @property
    def output(self) -> dict[str, Any]:
        return dict(self.spec.output)

    @property
    def retrieval(self) -> dict[str, str] | None:
        """The retrieval config id and the input that receives its chunks, if the prompt uses one."""
        if not self.spec.retrieval_config:
            return None
        return {"config": self.spec.retrieval_config, "into": self.spec.retrieval_into or ""}

    def render(self, variables: Mapping[str, Any] | None = None, /, **named: Any) -> list[dict[str, str]]:
        """The messages for these variables, validated against the inputs schema, rendered in the sandbox.

        Raises templating.InputError for variables that break the schema, jinja2.TemplateError for a render
        that fails.
        """
        values = {**(variables or {}), **named}
        validate_inputs(self.spec, values)
        return render_messages(self.spec, values, self.limits)

    def _request(self, variables: Mapping[str, Any] | None, named: dict[str, Any]) -> dict[str, Any]:
        """litellm's arguments: keyword names the prompt declares as inputs are variables, the rest override
        the call (temperature, api_base, timeout...).

        The overrides are the app's own code and pass as given; the prompt's params pass only through the
        allowlist, and a model name holding a URL is refused: modelparams.RefusedParams, before any request.
        """
        from promptops.evals.runner import provider_params
        from promptops.modelparams import RefusedParams, endpoint_in_model

        refused = endpoint_in_model(self.model)
        if refused:
            raise RefusedParams(refused)
        declared = self.spec.declared_inputs
        values = {**(variables or {}), **{k: v for k, v in named.items() if k in declared}}
        overrides = {k: v for k, v in named.items() if k not in declared}
        arguments = provider_params(self.spec.params)
        arguments.update(overrides)
        return {"model": self.model, "messages": self.render(values), **arguments}

    def complete(self, variables: Mapping[str, Any] | None = None, /, **named: Any) -> Any:
        """Call the model through litellm (``litellm.completion``) and return its response."""
        from promptops.evals.runner import import_litellm

        return import_litellm().completion(**self._request(variables, named))

    async def acomplete(self, variables: Mapping[str, Any] | None = None, /, **named: Any) -> Any:
        """``complete`` through ``litellm.acompletion``."""
        from promptops.evals.runner import import_litellm

        return await import_litellm().acompletion(**self._request(variables, named))


def load(prompt_id: str, env: str, *, root: str | os.PathLike[str] | None = None,
         bundle: str | os.PathLike[str] | None = None) -> Prompt:
    """The version of ``prompt_id`` that ``env`` holds. Raises LoadError when it cannot be had."""
    lock = _find_lock(root, bundle)
    held = lock.environments.get(env)
    if held is None:
        known = ", ".join(sorted(lock.environments)) or "none"
        raise LoadError(f"{lock.source.display} has no environment '{env}' (environments: {known})")
    entry = held.get(prompt_id)
    if entry is None:
        known = ", ".join(sorted(held)) or "none"
        raise LoadError(f"{env} holds no version of '{prompt_id}' in {lock.source.display} (it holds: {known})")
    try:
        snapshot = lockfile.read_snapshot(lock.releases_dir, prompt_id, entry.version)
    except lockfile.LockError as exc:
        raise LoadError(f"{lock.where(('environments', env, prompt_id, 'version'))}: {exc}") from None
    source = Source(lockfile.snapshot_path(lock.releases_dir, prompt_id, entry.version), prompt_id)
    validator = SchemaValidator()
    problems = validator.findings("prompt", snapshot["spec"], source)
    if problems:
        raise LoadError(f"release snapshot of '{prompt_id}' {entry.version} is not a valid prompt: {problems[0]}")
    spec = build_prompt(snapshot["spec"], source, [])
    return Prompt(prompt_id, entry.version, env, entry.commit, spec)


def _find_lock(root: str | os.PathLike[str] | None, bundle: str | os.PathLike[str] | None) -> lockfile.Lock:
    folder = bundle or root or os.environ.get(BUNDLE_ENV)
    if folder is not None:
        path = Path(folder) / lockfile.LOCK_NAME
        if not path.is_file():
            raise LoadError(f"no {lockfile.LOCK_NAME} in {folder} (write one with promptops promote, "
                            "or a bundle with promptops export)")
    else:
        path = _walk_up(Path.cwd())
    try:
        return lockfile.read_lock(path, str(path))
    except lockfile.LockError as exc:
        raise LoadError(str(exc)) from None


def _walk_up(start: Path) -> Path:
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / lockfile.LOCK_NAME).is_file():
            return folder / lockfile.LOCK_NAME
    raise LoadError(f"no {lockfile.LOCK_NAME} in {start} or above it; pass root= or bundle=, or set ${BUNDLE_ENV}")


# --- export --------------------------------------------------------------------------------------

def export(lock: lockfile.Lock, environment: str, destination: Path) -> list[str]:
    """Write a self-contained bundle of ``environment``: its lock (no history) and its snapshots.

    ``destination`` must be missing, empty, or an earlier bundle (replaced whole). Returns the prompt ids.
    """
    held = lock.environments.get(environment)
    if held is None:
        raise LoadError(f"{lock.source.display} has no environment '{environment}'")
    _check_destination(destination)
    staging = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")  # mkdir: the umask's mode
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for prompt_id, entry in sorted(held.items()):
            snapshot = lockfile.read_snapshot(lock.releases_dir, prompt_id, entry.version)
            lockfile.write_snapshot(staging / BUNDLE_RELEASES, snapshot)
        bundled = {environment: dict(sorted(held.items()))}
        text = lockfile.dump_lock(bundled, releases=BUNDLE_RELEASES, history=False)
        (staging / lockfile.LOCK_NAME).write_text(text, encoding="utf-8")
        _swap_in(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(held)


def _check_destination(destination: Path) -> None:
    if destination.exists() and (not destination.is_dir() or not _replaceable(destination)):
        raise LoadError(f"{destination} exists and is not an empty folder or an earlier promptops bundle; "
                        "choose another folder")
    destination.parent.mkdir(parents=True, exist_ok=True)


def _replaceable(folder: Path) -> bool:
    names = {p.name for p in folder.iterdir()}
    return not names or names <= {lockfile.LOCK_NAME, BUNDLE_RELEASES} and lockfile.LOCK_NAME in names


def _swap_in(staging: Path, destination: Path) -> None:
    """Replace ``destination`` by ``staging`` with renames: a reader sees the old bundle or the new one."""
    if destination.exists():
        old = destination.with_name(f".{destination.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(destination, old)
        os.replace(staging, destination)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, destination)
