"""The distribution: what the wheel holds, and that an installed wheel works on its own.

The wheel is built the way a release is (``python -m build``: an sdist, then a
wheel from that sdist, in an isolated build environment), from a copy of the
working tree, and installed with ``pip install --no-deps --target``. A
subprocess then imports promptops from that folder alone (``python -S``, the
dependencies on PYTHONPATH, the current directory outside the checkout), so
that the source tree cannot quietly supply schemas/ or templates/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from helpers import repo
from promptops import __version__

ROOT = Path(__file__).resolve().parents[1]

# A small project that lints clean and exercises every file kind, the model
# catalogue (max_tokens against the model's limit) and cross-file references.
PROJECT = {
    "promptops.yaml": """\
defaults: {model: openai/gpt-4o-mini}
environments: [dev, prod]
""",
    "prompts/answer.prompt.yaml": """\
id: demo.answer
description: Answer a question from retrieved passages.
model:
  name: openai/gpt-4o-mini
  params: {temperature: 0.2, max_tokens: 300}
retrieval: {config: demo_kb, into: passages}
inputs:
  type: object
  required: [question, passages]
  properties:
    question: {type: string, maxLength: 2000}
    passages: {type: array, items: {type: string}}
messages:
  - role: system
    content: Answer using only the passages given. If they do not say, answer that you don't know.
  - role: user
    content: |
      Passages:
      {% for p in passages %}[{{ loop.index }}] {{ p }}
      {% endfor %}
      Question: {{ question }}
output: {format: text}
""",
    "retrieval/kb.retrieval.yaml": """\
id: demo_kb
embedding: {model: openai/text-embedding-3-small, dimensions: 1536}
chunking: {strategy: recursive, size: 512, overlap: 64, unit: tokens}
retriever: {top_k: 8, min_score: 0.25}
reranker: {model: cohere/rerank-v3.5, top_n: 4}
""",
    "evals/answer.eval.yaml": """\
prompt: demo.answer
cases:
  - id: refund-window
    vars: {question: "How long is the refund window?", passages: ["Refunds are accepted within 30 days."]}
    expected: "30 days"
    assert:
      - {type: contains, value: "{{ expected }}"}
gates: {pass_rate: 0.9}
""",
}

# Line 5 uses a variable that `inputs` does not declare: PO202.
BROKEN_PROMPT = """\
id: demo.broken
model: {name: openai/gpt-4o-mini}
inputs: {type: object, properties: {name: {type: string}}}
messages:
  - {role: user, content: "Say hello to {{ name }} from {{ company }}."}
"""

# Runs `promptops lint ARGS...` through the real entry point, then reports what
# it imported. Usage: python -c CHECK RESULT.json [lint args...]
CHECK = r"""
import json, sys
result_path, lint_args = sys.argv[1], sys.argv[2:]
import promptops
from promptops import resources
from promptops.cli import main

sys.argv = ["promptops", "lint", *lint_args]
status = main()
with open(result_path, "w", encoding="utf-8") as out:
    json.dump({
        "file": promptops.__file__,
        "schemas": str(resources.data_dir("schemas")),
        "templates": str(resources.data_dir("templates")),
        "prompt_schema": resources.schema("prompt").get("$schema"),
        "modules": {name: getattr(module, "__file__", None) for name, module in sys.modules.items()
                    if name == "promptops" or name.startswith("promptops.")},
        "litellm": sorted(name for name in sys.modules if name.split(".")[0] == "litellm"),
        "status": status,
    }, out)
"""


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def explain(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-6000:]}\n--- stderr\n{done.stderr[-6000:]}"


def write_project(folder: Path, broken: bool = False) -> Path:
    for name, text in PROJECT.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    if broken:
        (folder / "prompts/broken.prompt.yaml").write_text(BROKEN_PROMPT, encoding="utf-8")
    return folder


def under(path: str | Path, folder: str | Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


# --------------------------------------------------------------------------- build and install


@pytest.fixture(scope="module")
def built(source_copy, tmp_path_factory) -> dict[str, Path]:
    src = source_copy()
    dist = tmp_path_factory.mktemp("dist")
    done = run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)], cwd=src, timeout=900)
    assert done.returncode == 0, "python -m build failed\n" + explain(done)
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())
    return {"src": src, "wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    done = run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--target", str(target),
                str(built["wheel"])], cwd=target, timeout=300)
    assert done.returncode == 0, "pip install --target failed\n" + explain(done)
    return target


def outside_source(paths: list[str], checkout: Path, environments: list[str]) -> list[str]:
    """The folders in ``paths`` that cannot supply promptops from the checkout's source.

    Drops the checkout and every folder in it (the tests/ folder pytest adds,
    say) except those inside the interpreter's own environment: README puts the
    virtualenv at .venv in the clone, and its site-packages holds the
    dependencies. An environment that holds the checkout (a system Python with
    the clone under its prefix) keeps nothing of the checkout.
    """
    inside = [Path(prefix) for prefix in environments if under(prefix, checkout) and not under(checkout, prefix)]

    def from_source(path: str) -> bool:
        return under(path, checkout) and not any(under(path, environment) for environment in inside)

    return [p for p in paths if p and os.path.isdir(p) and not from_source(p)]


def installed_env(target: Path, workdir: Path) -> dict[str, str]:
    """PYTHONPATH = the installed wheel, then the current interpreter's paths minus the checkout's source.

    Run with ``python -S``: no site-packages .pth files, hence no editable
    install of promptops that could point back at the source tree.
    """
    inherited = outside_source(sys.path, ROOT, [sys.prefix, sys.base_prefix])
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"}}
    env["PYTHONPATH"] = os.pathsep.join([str(target), *inherited])
    env["PROMPTOPS_CACHE_DIR"] = str(workdir / ".promptops-cache")
    return env


@pytest.mark.parametrize("git_checkout", [True, False], ids=["git-clone", "unpacked-sdist"])
def test_the_source_copy_leaves_out_a_virtualenv_in_the_checkout(tmp_path, monkeypatch, git_checkout):
    """README puts .venv in the clone; a copy of the source must not drag 300 MB of site-packages along."""
    checkout = tmp_path / "clone"
    for name in ("pyproject.toml", "promptops/__init__.py", ".venv/pyvenv.cfg",
                 ".venv/lib/python3/site-packages/click/__init__.py"):
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text("", encoding="utf-8")
    (checkout / ".gitignore").write_bytes((ROOT / ".gitignore").read_bytes())
    if git_checkout:
        repo.git(checkout, "init", "-q")
    monkeypatch.setattr(repo, "ROOT", checkout)

    copied = repo.copy_source(tmp_path / "copy")

    assert sorted(str(p.relative_to(copied)) for p in copied.rglob("*") if p.is_file()) == [
        ".gitignore", "promptops/__init__.py", "pyproject.toml"]


# --------------------------------------------------------------------------- the wheel's contents


def test_wheel_holds_every_module_schema_and_template(built):
    src = built["src"]
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = set(wheel.namelist())

    def source(folder: str) -> set[str]:
        files = {p.relative_to(src / folder).as_posix() for p in (src / folder).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}
        assert files, f"{folder}/ is empty in the source"
        return files

    modules = {f"promptops/{name}" for name in source("promptops") if name.endswith(".py")}
    assert not (modules - names), (
        f"modules missing from the wheel: {sorted(modules - names)}; "
        "add new sub-packages to [tool.setuptools] packages in pyproject.toml"
    )
    for folder in ("schemas", "templates"):
        missing = {f"promptops/{folder}/{name}" for name in source(folder)} - names
        assert not missing, f"{folder}/ files missing from the wheel: {sorted(missing)}"

    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert not [n for n in names if n.split("/")[0] in {"tests", "examples", "bench", "schemas", "templates"}]


def test_wheel_metadata(built):
    from packaging.requirements import Requirement

    with zipfile.ZipFile(built["wheel"]) as wheel:
        dist_info = next(n.split("/")[0] for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(f"{dist_info}/METADATA").decode())
        entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()

    assert metadata["Version"] == __version__
    assert "promptops = promptops.cli:main" in entry_points
    requires = {Requirement(r).name.lower(): Requirement(r) for r in metadata.get_all("Requires-Dist") or []
                if "extra ==" not in r}
    assert "fastjsonschema" in requires
    litellm = requires["litellm"].specifier
    # Releases that were compromised on PyPI must never resolve.
    assert not any(litellm.contains(v, prereleases=True) for v in ("1.82.7", "1.82.8"))
    # The price map changes between releases: README promises an exact pin.
    assert [s.operator for s in litellm] == ["=="], f"litellm should be pinned exactly, not {litellm}"


# --------------------------------------------------------------------------- the installed wheel on its own


def test_installed_wheel_finds_its_own_schemas_and_templates(built, installed, tmp_path):
    project = write_project(tmp_path / "project")
    result = tmp_path / "result.json"
    done = run([sys.executable, "-S", "-c", CHECK, str(result)], cwd=project,
               env=installed_env(installed, tmp_path))
    assert done.returncode == 0 and result.is_file(), explain(done)
    info = json.loads(result.read_text(encoding="utf-8"))

    package = installed / "promptops"
    assert under(info["file"], installed), f"promptops imported from {info['file']}, not from {installed}"
    outside = {name: path for name, path in info["modules"].items() if path and not under(path, installed)}
    assert not outside, f"modules loaded from outside the installed wheel: {outside}"
    assert Path(info["schemas"]) == package / "schemas"
    assert Path(info["templates"]) == package / "templates"
    assert info["prompt_schema"] == "https://json-schema.org/draft/2020-12/schema"
    # Everything under templates/ in the source is there in the installed package.
    for source_file in (built["src"] / "templates").rglob("*"):
        if source_file.is_file():
            relative = source_file.relative_to(built["src"] / "templates")
            assert (package / "templates" / relative).is_file(), f"templates/{relative} not installed"
    # And the installed lint works: the example project is clean, without litellm.
    assert info["status"] == 0, explain(done)
    assert info["litellm"] == []


def test_a_virtualenv_inside_the_checkout_supplies_the_dependencies_not_the_source(tmp_path):
    """README's layout: the clone, with its virtualenv at .venv inside it."""
    checkout = tmp_path / "clone"
    venv = checkout / ".venv"
    site_packages = venv / "lib/python3/site-packages"
    stdlib = tmp_path / "python/lib/python3"
    for folder in (checkout / "tests", site_packages, stdlib):
        folder.mkdir(parents=True)
    paths = ["", str(checkout), str(checkout / "tests"), str(stdlib), str(site_packages), "__editable__.finder"]

    assert outside_source(paths, checkout, [str(venv), str(tmp_path / "python")]) == [str(stdlib), str(site_packages)]
    # A Python whose prefix holds the clone (installed under /usr, clone in /usr/src) keeps none of it.
    assert outside_source(paths, checkout, [str(tmp_path)]) == [str(stdlib)]


def test_installed_wheel_lints_a_broken_prompt(installed, tmp_path):
    project = write_project(tmp_path / "project", broken=True)
    done = run([sys.executable, "-S", "-m", "promptops", "lint", "--no-color"], cwd=project,
               env=installed_env(installed, tmp_path))
    assert done.returncode == 1, explain(done)
    assert "prompts/broken.prompt.yaml:5:" in done.stdout and "PO202" in done.stdout, explain(done)
    assert "Traceback" not in done.stderr


def test_installed_wheel_version(installed, tmp_path):
    done = run([sys.executable, "-S", "-m", "promptops", "--version"], cwd=tmp_path,
               env=installed_env(installed, tmp_path))
    assert done.returncode == 0, explain(done)
    assert done.stdout.strip() == f"promptops, version {__version__}"


# --------------------------------------------------------------------------- the development install


def test_python_m_promptops_version(tmp_path):
    done = run([sys.executable, "-m", "promptops", "--version"], cwd=tmp_path)
    assert done.returncode == 0, explain(done)
    assert done.stdout.strip() == f"promptops, version {__version__}"


def test_console_script_version(tmp_path):
    script = Path(sys.executable).with_name("promptops")
    if not script.is_file():
        pytest.skip(f"no console script next to {sys.executable} (promptops not pip-installed here)")
    done = run([str(script), "--version"], cwd=tmp_path)
    assert done.returncode == 0, explain(done)
    assert done.stdout.strip() == f"promptops, version {__version__}"


@pytest.mark.parametrize("broken", [False, True], ids=["clean", "with-findings"])
def test_lint_never_imports_litellm(tmp_path, broken):
    """The pre-commit path stays light: linting (clean or not) must not import litellm."""
    project = write_project(tmp_path / "project", broken=broken)
    result = tmp_path / "result.json"
    env = dict(os.environ, PROMPTOPS_CACHE_DIR=str(tmp_path / ".promptops-cache"))
    done = run([sys.executable, "-c", CHECK, str(result), "--no-color"], cwd=project, env=env)
    assert done.returncode == 0 and result.is_file(), explain(done)
    info = json.loads(result.read_text(encoding="utf-8"))
    assert info["status"] == (1 if broken else 0), explain(done)
    assert info["litellm"] == [], f"lint imported {info['litellm'][:5]}"
