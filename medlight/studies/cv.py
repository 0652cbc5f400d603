"""Cross-validation out of fold: every fold's validation cases scored per fold and pooled over the folds.

``medlight study cv STUDY`` writes, beside the report (default ``<study>/reports/<budget>/``):

* ``cv_per_case.csv``: one row per (run, validation case): variant, grid factors, case_id, metrics;
* ``cv_summary.csv``: per variant and seed (every grid factor but the fold), one row per fold and a ``pooled``
  row, the mean over all out-of-fold cases (each non-test case exactly once), with the number of cases.

The values are each run's ``metrics/val_per_case.csv``: its last validation epoch, in the preprocessed geometry
(validation scores for model selection; the held-out test is the source-geometry score).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medlight.errors import ConfigError
from medlight.runs.layout import RunLayout, write_table
from medlight.studies.runner import DEFAULT_RUNS_ROOT, run_dir
from medlight.studies.spec import Study


def fold_factor(study: Study) -> str:
    """The grid factor that sets ``data.init_args.fold``."""
    for name, factor in study.grid.items():
        if any(key.split(".")[-1] == "fold" for key in factor["keys"]):
            return name
    raise ConfigError(f"{study.folder}: no grid factor sets the fold (e.g. keys: [data.init_args.fold])")


def out_of_fold(study: Study, budget: str, runs_root: Path = DEFAULT_RUNS_ROOT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-case, summary) out-of-fold tables of the study's trained runs (external variants have no folds)."""
    fold = fold_factor(study)
    frames = []
    for run in study.runs(budget):
        table = RunLayout(run_dir(study, budget, run, runs_root)).per_case("val")
        if run.external is None and table.is_file():
            frames.append(pd.read_csv(table).assign(variant=run.variant, **run.point, run=run.name))
    if not frames:
        return pd.DataFrame(), pd.DataFrame()
    cases = pd.concat(frames, ignore_index=True)
    ident = ["variant", *study.grid, "run", "case_id"]
    cases = cases[[*ident, *(c for c in cases.columns if c not in ident)]]
    metrics = [c for c in cases.columns if c not in ident and pd.api.types.is_numeric_dtype(cases[c])]
    repeat = [f for f in study.grid if f != fold]  # seeds and other factors: one pooled row each
    rows = []
    for key, part in cases.groupby(["variant", *repeat], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        ident_values = dict(zip(["variant", *repeat], key))
        for value, fold_part in part.groupby(fold):
            rows.append({**ident_values, fold: value, "cases": len(fold_part), **fold_part[metrics].mean().to_dict()})
        folds = sorted(part[fold].unique().tolist())
        complete = len(folds) == len(study.grid[fold]["values"]) and not part["case_id"].duplicated().any()
        pooled = {**ident_values, fold: "pooled", "cases": len(part), **part[metrics].mean().to_dict()}
        rows.append({**pooled, "folds": len(folds), "complete": complete})
    return cases, pd.DataFrame(rows)


def write_out_of_fold(study: Study, budget: str, runs_root: Path, out: Path | None = None) -> Path:
    cases, summary = out_of_fold(study, budget, runs_root)
    out = out or study.folder / "reports" / budget
    write_table(cases.to_dict("records"), out / "cv_per_case.csv")
    return write_table(summary.to_dict("records"), out / "cv_summary.csv")
