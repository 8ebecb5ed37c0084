"""Cost-estimate speed. Prints figures and ratios, is not a test.

    python bench/cost_bench.py [--prompts 200] [--cases 50] [--runs 3] [--hook-only] [--baseline DIR]

The commit hook (issue 12): `promptops cost --staged --warn` on a typical
commit, against controls measured in the same run on the same commit: Python's
own start-up (`python -c pass`) and the lint hook (`promptops lint` on the
staged files). Two repositories: the bundled example (4 prompts, one edited)
and a larger one (--hook-prompts prompts with --hook-cases eval cases each,
five edited). Target: under 0.5 s whole-process, as lint is.

The pull request (issue 3): 200 changed prompts x 50 eval cases each, both refs,
whole process; target under 5 s on a 2-core machine. Also prints the
token-counting throughput of promptops' counter against raw tiktoken on the
same rendered messages.

Child processes keep their bytecode in a temporary folder (as after a pip
install), whatever PYTHONDONTWRITEBYTECODE says, and the promptops cache
(compiled schemas, tokenizer) in a temporary folder warmed by one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "support-assistant"
HOOK_TARGET_S = 0.5
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]

PROMPT = """\
id: team{team}.prompt{i}
model:
  name: openai/gpt-4o-mini
  params: {{temperature: 0.2, max_tokens: 300}}
retrieval: {{config: kb{team}, into: passages}}
inputs:
  type: object
  required: [question, passages]
  properties:
    question: {{type: string}}
    customer: {{type: string}}
    passages: {{type: array, items: {{type: string}}}}
messages:
  - role: system
    content: |
      You are the support assistant for product {i}. Answer only from the passages.
      Cite passages like [1]. If they do not hold the answer, say you don't know.
  - role: user
    content: |
      Customer: {{{{ customer }}}}
      Passages:
      {{% for p in passages %}}[{{{{ loop.index }}}}] {{{{ p }}}}
      {{% endfor %}}
      Question: {{{{ question }}}}
"""
RETRIEVAL = """\
id: kb{team}
embedding: {{model: openai/text-embedding-3-small}}
chunking: {{size: 400, overlap: 40}}
retriever: {{top_k: {top_k}}}
index: {{name: kb{team}-v1}}
"""
WORDS = ("refund invoice plan seat member project export billing password login workspace archive "
         "upgrade downgrade trial discount tax receipt card bank transfer").split()


def make_repo(root: Path, prompts: int, cases: int) -> None:
    (root / "prompts").mkdir(parents=True)
    (root / "evals").mkdir()
    usage = "\n".join(f"  team{i % 10}.prompt{i}: {{calls_per_day: {100 + i}}}" for i in range(prompts))
    (root / "promptops.yaml").write_text(f"usage:\n{usage}\n")
    for team in range(10):
        (root / f"kb{team}.retrieval.yaml").write_text(RETRIEVAL.format(team=team, top_k=6))
    for i in range(prompts):
        (root / "prompts" / f"p{i:03d}.prompt.yaml").write_text(PROMPT.format(team=i % 10, i=i))
        rows = []
        for c in range(cases):
            question = " ".join(WORDS[(c * 7 + k * 3 + i) % len(WORDS)] for k in range(8 + c % 17)) + "?"
            rows.append(json.dumps({"id": f"c{c}", "vars": {"question": question, "customer": f"cust-{c}",
                                                             "passages": []}}))
        (root / "evals" / f"p{i:03d}.jsonl").write_text("\n".join(rows) + "\n")
        (root / "evals" / f"p{i:03d}.eval.yaml").write_text(
            f"prompt: team{i % 10}.prompt{i}\ndataset: p{i:03d}.jsonl\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "-C", str(root)]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "base"], check=True)
    for i in range(prompts):  # every prompt changes: a longer system message
        path = root / "prompts" / f"p{i:03d}.prompt.yaml"
        path.write_text(path.read_text().replace("Answer only", "Be brief. Answer only"))
    for team in range(10):  # and retrieval grows
        (root / f"kb{team}.retrieval.yaml").write_text(RETRIEVAL.format(team=team, top_k=8))


def make_hook_repo(root: Path, prompts: int, cases: int, edited: int) -> list[str]:
    """A committed project of ``prompts`` prompts, ``cases`` eval cases and usage each, with ``edited``
    prompts edited and staged, as a commit hook finds it; returns the staged spec files."""
    make_repo(root, prompts, cases)  # commits a base, then edits every prompt and retrieval config
    subprocess.run(GIT + ["-C", str(root), "checkout", "-q", "--", "."], check=True)
    step = max(1, prompts // edited)
    staged = [f"prompts/p{i:03d}.prompt.yaml" for i in range(0, prompts, step)][:edited]
    for name in staged:
        path = root / name
        path.write_text(path.read_text().replace("Answer only", "Be brief. Answer only"))
    subprocess.run(GIT + ["-C", str(root), "add", "--", *staged], check=True)
    return staged


def make_example_repo(root: Path) -> list[str]:
    """The bundled example, committed, with its answer prompt's system message edited and staged."""
    shutil.copytree(EXAMPLE, root)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(GIT + ["-C", str(root), "add", "-A"], check=True)
    subprocess.run(GIT + ["-C", str(root), "commit", "-qm", "base"], check=True)
    name = "prompts/answer.prompt.yaml"
    path = root / name
    text = path.read_text()
    edited = text.replace("using only the numbered passages", "using only, and always, the numbered passages")
    assert edited != text, "the example's answer prompt changed: update the edit in make_example_repo"
    path.write_text(edited)
    subprocess.run(GIT + ["-C", str(root), "add", "--", name], check=True)
    return [name]


def child_environment(scratch: Path) -> dict[str, str]:
    """Bytecode kept (as after a pip install) and promptops' cache in a folder of this run."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    env["PROMPTOPS_CACHE_DIR"] = str(scratch / "promptops-cache")
    return env


def run_once(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall time and CPU time (user + system, the process and its children) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return wall, cpu, done


def hook_figures(root: Path, staged: list[str], runs: int, env: dict[str, str],
                 baseline: Path | None) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds of the cost hook and its controls, interleaved round by round so that
    a busy moment of a shared machine falls on all of them alike; first, one run of each as it finds
    the caches (cold on the first repository: no bytecode, no compiled schemas, no tokenizer cache).
    With a baseline, the same hook from that checkout of promptops runs in the same rounds."""
    python = sys.executable
    cost = [python, "-m", "promptops", "cost", "--staged", "--warn"]
    commands = {
        "python -c pass": ([python, "-c", "pass"], env),
        "lint hook": ([python, "-m", "promptops", "lint", *staged], env),
        "cost hook": (cost, env),
    }
    if baseline is not None:  # its own cache folder: what it writes there is not ours to read
        commands["cost hook, baseline"] = (cost, {**env, "PYTHONPATH": str(baseline),
                                                  "PROMPTOPS_CACHE_DIR": env["PROMPTOPS_CACHE_DIR"] + "-baseline"})
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    first = {f"{name}, first run": run_once(command, root, environment)[:2]
             for name, (command, environment) in commands.items()}
    for _ in range(runs):
        for name, (command, environment) in commands.items():
            samples[name].append(run_once(command, root, environment)[:2])
    figures = {name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
               for name, values in samples.items()}
    return {**figures, **first}


def litellm_imported(root: Path, env: dict[str, str]) -> bool:
    imports = subprocess.run([sys.executable, "-X", "importtime", "-m", "promptops", "cost", "--staged", "--warn"],
                             cwd=root, env=env, capture_output=True, text=True).stderr
    return any(line.rstrip().endswith(" litellm") for line in imports.splitlines())


def print_hook(title: str, figures: dict[str, tuple[float, float]], runs: int) -> None:
    (startup, startup_cpu), (lint, lint_cpu), (cost, cost_cpu) = (
        figures[name] for name in ("python -c pass", "lint hook", "cost hook"))
    print(f"{title} (median of {runs}; wall s / CPU s)")
    for name, (wall, cpu) in figures.items():
        print(f"  {name:32s} {wall:6.3f} / {cpu:6.3f}")
    print(f"  cost hook / lint hook: {cost / lint:.2f} wall, {cost_cpu / lint_cpu:.2f} CPU   "
          f"cost hook / python -c pass: {cost / startup:.1f} wall   cost hook - start-up: {cost - startup:.3f} s")
    if "cost hook, baseline" in figures:
        before, before_cpu = figures["cost hook, baseline"]
        print(f"  cost hook / baseline: {cost / before:.2f} wall, {cost_cpu / before_cpu:.2f} CPU "
              f"(baseline / lint hook: {before / lint:.2f} wall)")
    print(f"  cost hook {cost:.3f} s: target < {HOOK_TARGET_S} s   {'OK' if cost < HOOK_TARGET_S else 'MISSED'}")


def bench_hook(scratch: Path, args: argparse.Namespace) -> None:
    env = child_environment(scratch)
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    example = scratch / "example"
    staged = make_example_repo(example)
    print_hook("commit hook, the bundled example: 4 prompts, 1 edited",
               hook_figures(example, staged, args.runs, env, args.baseline), args.runs)
    large = scratch / "large"
    staged = make_hook_repo(large, args.hook_prompts, args.hook_cases, 5)
    print_hook(f"commit hook, {args.hook_prompts} prompts x {args.hook_cases} cases, 5 edited",
               hook_figures(large, staged, args.runs, env, args.baseline), args.runs)
    print(f"  litellm imported by the cost hook: {'YES (defect)' if litellm_imported(large, env) else 'no'}")


def whole_process(root: Path, runs: int) -> tuple[float, dict]:
    samples, report = [], {}
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "promptops", "cost", "--base", "HEAD", "--format", "json"],
                              cwd=root, capture_output=True, text=True)
        samples.append(time.perf_counter() - start)
        if done.returncode not in (0, 1):
            sys.exit(f"promptops cost failed ({done.returncode}):\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout)
    return statistics.median(samples), report


def token_throughput(root: Path) -> None:
    """Tokens per second: promptops' counter on rendered messages, and raw tiktoken on the same text."""
    import tiktoken

    from promptops.config import load_workspace
    from promptops.estimate.tokens import TokenCounter
    from promptops.templating import render_messages

    workspace = load_workspace(root)
    counter = TokenCounter()
    rendered = []
    for suite in workspace.suites:
        spec = workspace.prompts[suite.prompt]
        rendered += [render_messages(spec, {**case.vars, "passages": ["x " * 200] * 8}) for case in suite.cases]
    model = "openai/gpt-4o-mini"
    counter.count_messages(model, rendered[0])  # load the encoding outside the timing
    start = time.perf_counter()
    total = sum(counter.count_messages(model, messages) for messages in rendered)
    ours = time.perf_counter() - start
    encoding = tiktoken.get_encoding("o200k_base")
    texts = [m["content"] for messages in rendered for m in messages]
    start = time.perf_counter()
    raw_total = sum(len(tokens) for tokens in encoding.encode_ordinary_batch(texts))
    raw = time.perf_counter() - start
    print(f"token counting: {len(rendered):,} requests, {total:,} tokens")
    print(f"  promptops TokenCounter: {total / ours:12,.0f} tokens/s")
    print(f"  raw tiktoken (batch):   {raw_total / raw:12,.0f} tokens/s   ratio {ours / raw:.2f}x the time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hook-prompts", type=int, default=200)
    parser.add_argument("--hook-cases", type=int, default=10)
    parser.add_argument("--hook-only", action="store_true", help="Only the commit-hook figures.")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="Another checkout of promptops (`git archive REV | tar -x -C DIR`): its cost hook "
                             "runs in the same rounds, for a before/after.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_hook(Path(tmp), args)
        if args.hook_only:
            return
        root = Path(tmp) / "repo"
        make_repo(root, args.prompts, args.cases)
        seconds, report = whole_process(root, args.runs)
        changed = sum(p["status"] == "changed" for p in report["prompts"])
        renders = sum((p["head"] or {}).get("input_samples", 0) + (p["base"] or {}).get("input_samples", 0)
                      for p in report["prompts"])
        print(f"{args.prompts} prompts x {args.cases} cases, both refs: {changed} changed, {renders:,} renders counted")
        print(f"whole process (promptops cost --format json): {seconds:.2f} s (median of {args.runs})   "
              f"target < 5 s   {'OK' if seconds < 5 else 'MISSED'}")
        print(f"headline: {report['headline']}")
        token_throughput(root)


if __name__ == "__main__":
    main()
