"""Collect a study's runs into one results table and render a report (Markdown, HTML, PNG).

Everything is read from the run folders: ``metrics/test_per_case.csv`` (one row per case),
``metrics/test_summary.json``, ``metrics.csv`` (learning curves), ``predictions/`` (overlays),
``manifest.json`` and ``study_run.jsonl`` (wall time). Nothing is task-specific except the overlays,
which are drawn when runs saved NIfTI predictions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from medlight.studies.runner import DEFAULT_RUNS_ROOT, is_complete, run_dir
from medlight.studies.spec import Study

LOWER_IS_BETTER = ("hd", "nmse", "error", "loss", "time", "seconds")


@dataclass
class Collected:
    """All the numbers of a study."""

    cases: pd.DataFrame  # one row per (run, case): variant, grid factors, run, case_id, metrics
    runs: pd.DataFrame  # one row per run: variant, grid factors, run, run-level summary, wall seconds
    missing: list[str]  # runs without results yet
    metric_columns: list[str]


def collect(study: Study, budget: str, runs_root: Path = DEFAULT_RUNS_ROOT) -> Collected:
    case_frames, run_rows, missing = [], [], []
    for run in study.runs(budget):
        folder = run_dir(study, budget, run, runs_root)
        if not is_complete(folder):
            missing.append(run.name)
            continue
        ident = {"variant": run.variant, **run.point, "run": run.name}
        per_case = pd.read_csv(folder / "metrics" / "test_per_case.csv")
        case_frames.append(per_case.assign(**ident)[[*ident, *per_case.columns]])
        summary = json.loads((folder / "metrics" / "test_summary.json").read_text())
        run_rows.append({**ident, **summary, "wall_seconds": _wall_seconds(folder), "folder": str(folder)})
    cases = pd.concat(case_frames, ignore_index=True) if case_frames else pd.DataFrame()
    runs = pd.DataFrame(run_rows)
    metric_columns = (
        [
            c
            for c in cases.columns
            if c not in ("variant", "run", "case_id", *study.grid) and pd.api.types.is_numeric_dtype(cases[c])
        ]
        if len(cases)
        else []
    )
    return Collected(cases, runs, missing, metric_columns)


def _wall_seconds(folder: Path) -> float:
    log = folder / "study_run.jsonl"
    if not log.is_file():
        return float("nan")
    return float(sum(json.loads(line)["seconds"] for line in log.read_text().splitlines() if line.strip()))


def metric_families(columns: list[str]) -> dict[str, list[str]]:
    """Group per-class columns (``dice_anterior``, ``dice_posterior``) under their metric (``dice``)."""
    prefixes: dict[str, list[str]] = {}
    for column in columns:
        prefixes.setdefault(column.split("_", 1)[0], []).append(column)
    families = {}
    for prefix, members in prefixes.items():
        if len(members) > 1 or members[0] != prefix:
            families[prefix] = members
        else:
            families[members[0]] = members
    return families


def lower_is_better(metric: str) -> bool:
    return any(metric.startswith(k) or metric.endswith(k) for k in LOWER_IS_BETTER)


def with_family_means(collected: Collected) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Per-case table plus one column per metric family (mean over its classes)."""
    families = metric_families(collected.metric_columns)
    cases = collected.cases.copy()
    for family, members in families.items():
        if family not in cases:
            cases[family] = cases[members].mean(axis=1)
    return cases, families


def by_condition(cases: pd.DataFrame, conditions: list[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """The per-case table split by the values of the study's conditions (one part when it has none)."""
    if not conditions:
        return [({}, cases)]
    return [
        (dict(zip(conditions, key if isinstance(key, tuple) else (key,))), part)
        for key, part in cases.groupby(conditions, sort=True)
    ]


def per_condition(parts: list[tuple[dict[str, Any], pd.DataFrame]], table: Any, *args: Any) -> pd.DataFrame:
    """``table(part, *args)`` for every condition, stacked, with the condition values as leading columns."""
    frames = []
    for condition, part in parts:
        frame = table(part, *args)
        for i, (name, value) in enumerate(condition.items()):
            frame.insert(i, name, value)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summary_table(cases: pd.DataFrame, metrics: list[str], variants: list[str]) -> pd.DataFrame:
    """Mean +- std over runs (folds x seeds) of each run's mean over cases; one row per variant."""
    per_run = cases.groupby(["variant", "run"])[metrics].mean()
    rows = []
    for variant in variants:
        if variant not in per_run.index.get_level_values(0):
            continue
        runs = per_run.loc[variant]
        rows.append(
            {
                "variant": variant,
                "runs": len(runs),
                **{m: f"{runs[m].mean():.3f} ± {runs[m].std(ddof=1) if len(runs) > 1 else 0.0:.3f}" for m in metrics},
            }
        )
    return pd.DataFrame(rows)


def paired_tests(cases: pd.DataFrame, metrics: list[str], variants: list[str], baseline: str) -> pd.DataFrame:
    """Wilcoxon signed-rank test of each variant against the baseline, paired over cases.

    Each case's value is first averaged over the runs (folds x seeds) of a variant. p-values are
    Holm-corrected over the variants compared, separately for each metric.
    """
    per_case = cases.groupby(["variant", "case_id"])[metrics].mean()
    rows = []
    for metric in metrics:
        if baseline not in per_case.index.get_level_values(0):
            break
        base = per_case.loc[baseline][metric]
        metric_rows: list[dict[str, Any]] = []
        for variant in variants:
            if variant == baseline or variant not in per_case.index.get_level_values(0):
                continue
            other = per_case.loc[variant][metric]
            common = base.index.intersection(other.index)
            diff = (other[common] - base[common]).dropna()
            p = float(stats.wilcoxon(diff).pvalue) if len(diff) > 0 and np.any(diff != 0) else 1.0
            metric_rows.append(
                {
                    "metric": metric,
                    "variant": variant,
                    "baseline": baseline,
                    "cases": len(diff),
                    "mean_diff": float(diff.mean()),
                    "median_diff": float(diff.median()),
                    "p": p,
                }
            )
        for row, adjusted in zip(metric_rows, _holm([r["p"] for r in metric_rows])):
            row["p_holm"] = adjusted
            better = row["mean_diff"] < 0 if lower_is_better(metric) else row["mean_diff"] > 0
            row["verdict"] = ("better" if better else "worse") if adjusted < 0.05 else "no significant difference"
        rows += metric_rows
    return pd.DataFrame(rows)


def _holm(pvalues: list[float]) -> list[float]:
    order = np.argsort(pvalues)
    adjusted = np.empty(len(pvalues))
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()


def leaders(cases: pd.DataFrame, metrics: list[str]) -> dict[str, str]:
    """The variant with the best mean of each metric."""
    means = cases.groupby("variant")[metrics].mean()
    return {m: str(means[m].idxmin() if lower_is_better(m) else means[m].idxmax()) for m in metrics}


COST_COLUMNS = ("params", "train_seconds_per_epoch", "train_seconds_per_step", "inference_seconds_per_case")


def cost_table(runs: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    """Mean over runs of each variant's cost (from ``medlight.callbacks.RunTiming``); empty without it."""
    columns = [c for c in COST_COLUMNS if c in runs]
    if not columns or runs.empty:
        return pd.DataFrame()
    means = runs.groupby("variant")[columns].mean()
    rows = [{"variant": v, **means.loc[v].to_dict()} for v in variants if v in means.index]
    table = pd.DataFrame(rows)
    if "params" in table:
        table["params"] = table["params"].map(lambda p: f"{p / 1e6:.2f} M" if p == p else "")
    return table.round(4)
