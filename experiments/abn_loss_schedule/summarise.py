"""Mean +- std over folds of the set-level metrics in each run's test_summary.json (from a study report).

``medlight study report`` averages per-patient columns; slice-level sensitivity, specificity and AUC and the
patient-level rates are set-level numbers, kept per run in ``runs.csv``. This prints them per variant::

    python experiments/abn_loss_schedule/summarise.py experiments/abn_loss_schedule/reports/cpu/runs.csv
"""

from __future__ import annotations

import sys

import pandas as pd

METRICS = [f"{level}_{m}" for level in ("slice", "patient") for m in ("accuracy", "sensitivity", "specificity", "auc")]


def summarise(runs_csv: str) -> pd.DataFrame:
    """One row per variant: ``mean ± std (n)`` of every set-level metric over the runs that define it."""
    runs = pd.read_csv(runs_csv)
    rows = []
    for variant, group in runs.groupby("variant", sort=False):
        row = {"variant": variant, "runs": len(group)}
        for metric in METRICS:
            values = group[metric].dropna() if metric in group else pd.Series(dtype=float)
            row[metric] = f"{values.mean():.3f} ± {values.std(ddof=1):.3f} ({len(values)})" if len(values) else "n/a"
        rows.append(row)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    table = summarise(sys.argv[1])
    print(table.set_index("variant").T.to_markdown())
