"""Cross-validation out of fold: every fold's validation cases scored per fold and pooled over the folds.

``medlight study cv STUDY`` writes, beside the report (default ``<study>/reports/<budget>/``):

* ``cv_per_case.csv``: one row per (run, validation case): variant, grid factors, case_id, metrics;
* ``cv_summary.csv``: per variant and seed (every grid factor but the fold), one row per fold and a ``pooled``
  row, the mean over all out-of-fold cases (each non-test case exactly once), with the number of cases.

The values are each run's ``metrics/best_val_per_case.csv``: the validation of the epoch whose model is
``best.ckpt`` (the model the run selected and tested), in the preprocessed geometry (validation scores for model
selection; the held-out test is the source-geometry score). A run without a best model (no monitored metric, or
made before that file existed) contributes its last validation, ``metrics/val_per_case.csv``, and the table says
so in its ``validation`` column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medlight.runs.layout import RunLayout, write_table
from medlight.studies.runner import DEFAULT_RUNS_ROOT, run_dir
from medlight.studies.spec import Study, fold_factor


def out_of_fold(study: Study, budget: str, runs_root: Path = DEFAULT_RUNS_ROOT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-case, summary) out-of-fold tables of the study's trained runs (external variants have no folds)."""
    fold = fold_factor(study.grid, study.folder)
    frames = []
    for run in study.runs(budget):
        if run.external is not None or run.members:
            continue
        layout = RunLayout(run_dir(study, budget, run, runs_root))
        for stage, which in (("best_val", "best"), ("val", "last")):
            if layout.per_case(stage).is_file():
                table = pd.read_csv(layout.per_case(stage))
                frames.append(table.assign(variant=run.variant, **run.point, run=run.name, validation=which))
                break
    if not frames:
        return pd.DataFrame(), pd.DataFrame()
    cases = pd.concat(frames, ignore_index=True)
    ident = ["variant", *study.grid, "run", "validation", "case_id"]
    cases = cases[[*ident, *(c for c in cases.columns if c not in ident)]]
    metrics = [c for c in cases.columns if c not in ident and pd.api.types.is_numeric_dtype(cases[c])]
    repeat = [f for f in study.grid if f != fold]  # seeds and other factors: one pooled row each
    rows = []
    for key, part in cases.groupby(["variant", *repeat], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        ident_values = dict(zip(["variant", *repeat], key))
        for value, fold_part in part.groupby(fold):
            which = "+".join(sorted(fold_part["validation"].unique()))
            means = fold_part[metrics].mean().to_dict()
            rows.append({**ident_values, fold: value, "validation": which, "cases": len(fold_part), **means})
        folds = sorted(part[fold].unique().tolist())
        complete = len(folds) == len(study.grid[fold]["values"]) and not part["case_id"].duplicated().any()
        which = "+".join(sorted(part["validation"].unique()))
        means = part[metrics].mean().to_dict()
        pooled = {**ident_values, fold: "pooled", "validation": which, "cases": len(part), **means}
        rows.append({**pooled, "folds": len(folds), "complete": complete})
    return cases, pd.DataFrame(rows)


def write_out_of_fold(study: Study, budget: str, runs_root: Path, out: Path | None = None) -> Path:
    cases, summary = out_of_fold(study, budget, runs_root)
    out = out or study.folder / "reports" / budget
    write_table(cases.to_dict("records"), out / "cv_per_case.csv")
    return write_table(summary.to_dict("records"), out / "cv_summary.csv")
