"""Paired comparison of two fits on the same held-out cases: mean Dice of each, the mean per-case difference and
its 95% bootstrap interval over cases.

    python experiments/plan_benchmark/paired.py RUN_A RUN_B

RUN_A and RUN_B are fit folders (``--trainer.default_root_dir``) holding ``metrics/test_per_case.csv``. A case's
Dice is the mean over the classes scored in it (a class absent from both label and prediction has no score). The
interval covers which cases were drawn for the test, not the run-to-run spread of training itself (different
seeds), which on the hippocampus is about +-0.01 (experiments/plan_benchmark/README.md).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np

from medlight.studies.stats import hierarchical_bootstrap


def case_dice(run: Path) -> dict[str, float]:
    """Case id -> mean Dice over the classes scored in that case."""
    path = run / "metrics" / "test_per_case.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: missing (is {run} a finished fit folder?)")
    scores = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            values = [float(v) for k, v in row.items() if k.startswith("dice_") and v not in ("", "nan")]
            values = [v for v in values if not math.isnan(v)]
            if values:
                scores[row["case_id"]] = float(np.mean(values))
    return scores


def compare(a: dict[str, float], b: dict[str, float], seed: int = 0) -> dict[str, float]:
    cases = sorted(set(a) & set(b))
    if not cases:
        raise SystemExit("the two runs share no scored test case")
    x = np.array([a[c] for c in cases])
    y = np.array([b[c] for c in cases])
    diff = y - x
    # one run, so the project's run-then-case bootstrap reduces to resampling cases
    low, high = hierarchical_bootstrap(diff[None, :], statistic=np.mean, seed=seed)
    return {
        "cases": len(cases),
        "a": float(x.mean()),
        "b": float(y.mean()),
        "diff": float(diff.mean()),
        "low": float(low),
        "high": float(high),
        "b_better": float((diff > 0).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    args = parser.parse_args()
    r = compare(case_dice(args.run_a), case_dice(args.run_b))
    print("| A | B | cases | Dice A | Dice B | B - A | 95% CI (cases) | cases B > A |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.run_a} | {args.run_b} | {r['cases']} | {r['a']:.4f} | {r['b']:.4f} | {r['diff']:+.4f} | "
        f"[{r['low']:+.4f}, {r['high']:+.4f}] | {r['b_better']:.0%} |"
    )


if __name__ == "__main__":
    main()
