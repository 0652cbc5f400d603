"""Paired tests within each labeled fraction, from a report's per-case table.

The study report tests every variant against one baseline (``farcluss_10``); this compares, at 10% and at 25%
labels separately, every variant with FARCLUSS at the same fraction (Wilcoxon signed-rank over the 52 test
cases, each case averaged over seeds, Holm-corrected per metric and fraction), with the report's own functions.

    python experiments/farcluss/paired_by_fraction.py [experiments/farcluss/reports/cpu]

Writes ``paired_by_fraction.csv`` next to ``results.csv`` and prints the Dice rows as Markdown.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from medlight.studies.report import metric_families, paired_tests


def main(report_dir: Path) -> None:
    cases = pd.read_csv(report_dir / "results.csv")
    metrics = [c for c in cases.columns if c not in ("variant", "seed", "run", "case_id")]
    families = metric_families(metrics)
    for family, members in families.items():
        cases[family] = cases[members].mean(axis=1)
    tables = []
    for fraction in ("10", "25"):
        variants = sorted(v for v in cases["variant"].unique() if v.endswith(f"_{fraction}"))
        tests = paired_tests(cases, list(families), variants, baseline=f"farcluss_{fraction}")
        tables.append(tests.assign(fraction=f"{fraction}%"))
    table = pd.concat(tables, ignore_index=True)
    table = table[["fraction", *[c for c in table.columns if c != "fraction"]]]
    table.to_csv(report_dir / "paired_by_fraction.csv", index=False)
    dice = table[table.metric == "dice"].assign(
        **{c: table[c].map(lambda x: f"{x:.3g}") for c in ("mean_diff", "median_diff", "p", "p_holm")}
    )
    print(dice.drop(columns=["metric"]).to_markdown(index=False))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/farcluss/reports/cpu"))
