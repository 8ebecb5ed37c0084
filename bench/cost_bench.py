"""Cost-estimate speed: 200 changed prompts x 50 eval cases each, whole process. Prints figures, is not a test.

    python bench/cost_bench.py [--prompts 200] [--cases 50] [--runs 3]

Target (issue 3): under 5 s whole-process on a 2-core machine. Also prints the
token-counting throughput of promptops' counter against raw tiktoken on the
same rendered messages.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
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
