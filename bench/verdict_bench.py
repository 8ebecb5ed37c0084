"""The PR verdict against a noisy stub model: false alarms and misses over many trials. Prints figures, is
not a test.

    python bench/verdict_bench.py [--trials 10]

Each trial is a full `promptops eval` of a 100-case suite at base and head (tests/helpers/verdict_trials.py):
fresh cache, a new seed for the model's noise, litellm to the stub server. For an unchanged prompt a
failed gate is a false alarm; for a real drop a failed gate is a catch. Also printed: the model calls a
trial makes, how many of them confirm flips, and its seconds. The control is the same trials with
confirmation off (eval.confirm 0): the suite's bare calls, and the false alarms confirmation prevents.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from statistics import fmean

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.verdict_trials import REAL_DROPS, UNCHANGED, make_projects, run_trial  # noqa: E402
from promptops.testing import StubServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, StubServer() as stub:
        projects = make_projects(Path(tmp))
        print(f"{args.trials} trials a scenario, 100 cases, max_pass_rate_drop 0.02, confirm 2")
        for scenario in UNCHANGED + REAL_DROPS:
            trials = [run_trial(scenario, seed, projects, stub, Path(tmp) / f"{scenario.name}-{seed}.db")
                      for seed in range(args.trials)]
            failed = sum(t.failed for t in trials)
            what = "caught" if scenario.real else "false alarms"
            print(f"  {scenario.name:45s} {what} {failed}/{args.trials}; {fmean(t.calls for t in trials):.0f} calls "
                  f"a trial ({fmean(t.confirmation_calls for t in trials):.0f} to confirm), "
                  f"{fmean(t.flaky for t in trials):.0f} flaky, {fmean(t.seconds for t in trials):.2f} s")
        print("control: the same trials with confirm 0")
        for scenario in UNCHANGED:
            trials = [run_trial(scenario, seed, projects, stub, Path(tmp) / f"bare-{scenario.name}-{seed}.db",
                                confirm=0)
                      for seed in range(args.trials)]
            print(f"  {scenario.name:45s} false alarms {sum(t.failed for t in trials)}/{args.trials}; "
                  f"{fmean(t.calls for t in trials):.0f} calls a trial, {fmean(t.seconds for t in trials):.2f} s")


if __name__ == "__main__":
    main()
