"""Lint speed: 1,000 generated prompt files, and a 5-file commit. Prints figures, is not a test.

    python bench/lint_bench.py [--files 1000] [--runs 5]

Targets (issue 2): the 5-file run costs little more than Python's own start-up
(under 0.35 s whole-process on a 2-core machine); 1,000 files lint faster than
check-jsonschema validates the same files against our prompt schema, although
lint does more. It also checks that the lint path never imports litellm, and
measures the same commit with one model name mistyped (the price map is
searched for the name it was meant to be only then).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROMPT = """\
id: team{team}.prompt{i}
description: Answers questions about product {i} from retrieved passages.
owners: [team-{team}]
model:
  name: openai/gpt-4o-mini
  params: {{temperature: 0.2, max_tokens: 400}}
retrieval: {{config: kb{team}, into: passages}}
inputs:
  type: object
  required: [question, passages]
  properties:
    question: {{type: string, maxLength: 4000}}
    passages: {{type: array, items: {{type: string}}}}
messages:
  - role: system
    content: |
      You answer questions about product {i} using only the passages given.
      If the passages do not contain the answer, say you don't know.
  - role: user
    content: |
      Passages:
      {{% for p in passages %}}[{{{{ loop.index }}}}] {{{{ p }}}}
      {{% endfor %}}
      Question: {{{{ question }}}}
output: {{format: text}}
budget: {{max_input_tokens: 6000, max_cost_per_call_usd: 0.002}}
"""

RETRIEVAL = """\
id: kb{team}
embedding: {{model: openai/text-embedding-3-small, dimensions: 1536}}
chunking: {{strategy: recursive, size: 512, overlap: 64, unit: tokens}}
retriever: {{top_k: 8}}
reranker: {{model: cohere/rerank-v3.5, top_n: 4}}
index: {{name: kb{team}-v1}}
"""


def make_project(root: Path, count: int) -> list[Path]:
    (root / "prompts").mkdir(parents=True)
    (root / "retrieval").mkdir()
    (root / "promptops.yaml").write_text("defaults: {model: openai/gpt-4o-mini}\n")
    for team in range(10):
        (root / "retrieval" / f"kb{team}.retrieval.yaml").write_text(RETRIEVAL.format(team=team))
    prompts = []
    for i in range(count):
        path = root / "prompts" / f"p{i:04d}.prompt.yaml"
        path.write_text(PROMPT.format(team=i % 10, i=i))
        prompts.append(path)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(git + ["-C", str(root), "add", "-A"], check=True)
    subprocess.run(git + ["-C", str(root), "commit", "-qm", "bench"], check=True)
    return prompts


def timed(command: list[str], cwd: Path, runs: int, expect: tuple[int, ...] = (0,)) -> float:
    """Median wall time of the whole process, after one warm-up run."""
    samples = []
    for attempt in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode not in expect:
            sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        if attempt:
            samples.append(elapsed)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    python = sys.executable
    promptops = [python, "-m", "promptops"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        prompts = make_project(root, args.files)
        changed = prompts[:: max(1, len(prompts) // 5)][:5]
        for path in changed:  # a commit edits them; pre-commit passes exactly these
            path.write_text(path.read_text().replace("say you don't know", "say that you don't know"))
        relative = [str(p.relative_to(root)) for p in changed]

        startup = timed([python, "-c", "pass"], root, args.runs)
        five = timed(promptops + ["lint", *relative], root, args.runs)
        whole = timed(promptops + ["lint"], root, max(1, args.runs // 2))
        imports = subprocess.run(
            [python, "-X", "importtime", "-m", "promptops", "lint", *relative],
            cwd=root, capture_output=True, text=True,
        ).stderr
        litellm_imported = any(line.rstrip().endswith(" litellm") for line in imports.splitlines())
        # A model name no price map knows makes lint look for the name it was meant to be (PO402, PO403).
        changed[0].write_text(changed[0].read_text().replace("openai/gpt-4o-mini", "openai/gpt-4o-mni"))
        typo = timed(promptops + ["lint", *relative], root, args.runs, expect=(0, 1))

        print(f"files: {args.files} prompts + 10 retrieval configs; runs: median of {args.runs}")
        print(f"python start-up (python -c pass):     {startup:6.3f} s")
        print(f"5-file commit (promptops lint 5):     {five:6.3f} s   target < 0.350 s   "
              f"{'OK' if five < 0.35 else 'MISSED'}   ({five - startup:.3f} s above start-up)")
        print(f"5-file commit, one model mistyped:    {typo:6.3f} s   ({typo - five:+.3f} s against the same commit "
              f"without: PO403 searches the price map)")
        print(f"whole project (promptops lint):       {whole:6.3f} s   "
              f"{args.files / whole:,.0f} files/s")
        check = shutil.which("check-jsonschema", path=str(Path(python).parent)) or shutil.which("check-jsonschema")
        if check:
            schema = REPO / "schemas" / "prompt.schema.json"
            files = [str(p.relative_to(root)) for p in prompts]
            reference = timed([check, "--schemafile", str(schema), *files], root, max(1, args.runs // 2))
            print(f"check-jsonschema, prompt schema only: {reference:6.3f} s   "
                  f"lint/check-jsonschema = {whole / reference:.2f}   {'OK' if whole < reference else 'MISSED'}")
        else:
            print("check-jsonschema: not installed (pip install check-jsonschema) - comparison skipped")
        print(f"litellm imported on the lint path:    {'YES (defect)' if litellm_imported else 'no'}")


if __name__ == "__main__":
    main()
