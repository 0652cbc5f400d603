"""Collect a study's runs into one results table, and the numbers of its report (summaries, paired tests).

Everything is read from the run folders: ``metrics/test_per_case.csv`` (one row per case),
``metrics/test_summary.json``, ``metrics.csv`` (learning curves), ``manifest.json`` and ``study_run.jsonl``
(wall time); or, without them, from the CSVs a report folder keeps (``results.csv``, ``runs.csv``,
``curves.csv``, ``environment.json``), so that a committed report can be re-rendered. Nothing is task-specific.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medlight.studies.runner import DEFAULT_RUNS_ROOT, is_complete, run_dir
from medlight.studies.spec import Study
from medlight.studies.stats import case_units, hierarchical_bootstrap, hodges_lehmann, holm, signed_rank

LOWER_IS_BETTER = ("hd", "nmse", "error", "loss", "time", "seconds")
SIGNIFICANCE = 0.05
NO_DIFFERENCE = "no significant difference"


@dataclass
class Collected:
    """All the numbers of a study."""

    cases: pd.DataFrame  # one row per (run, case): variant, grid factors, run, case_id, metrics
    runs: pd.DataFrame  # one row per run: variant, grid factors, run, run-level summary, wall seconds
    missing: list[str]  # runs without results yet
    metric_columns: list[str]
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # variant, grid, run, series, step, value
    environment: dict[str, Any] = field(default_factory=dict)  # machine and packages of the first run
    from_saved: bool = False  # re-read from a report folder's CSVs (no run folders)


def collect(study: Study, budget: str, runs_root: Path = DEFAULT_RUNS_ROOT) -> Collected:
    case_frames, run_rows, curve_frames, missing = [], [], [], []
    metric = study.primary_metric
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
        curve = _curves(folder / "metrics.csv", metric)
        if not curve.empty:  # an external variant or a fold ensemble has no training log
            curve_frames.append(curve.assign(**ident))
    cases = pd.concat(case_frames, ignore_index=True) if case_frames else pd.DataFrame()
    runs = pd.DataFrame(run_rows)
    curves = pd.concat(curve_frames, ignore_index=True) if curve_frames else pd.DataFrame()
    if not curves.empty:
        ident_columns = [c for c in ("variant", *study.grid, "run") if c in curves]  # a point may lack a factor
        curves = curves[[*ident_columns, "series", "step", "value"]]
    environment = _environment(runs)
    return Collected(cases, runs, missing, _metric_columns(cases, study), curves, environment)


def collect_saved(study: Study, budget: str, report_dir: Path) -> Collected:
    """The same numbers from a report folder: ``results.csv`` and ``runs.csv`` (and ``curves.csv`` if kept)."""
    cases = pd.read_csv(report_dir / "results.csv")
    runs = pd.read_csv(report_dir / "runs.csv")
    curves_file, environment_file = report_dir / "curves.csv", report_dir / "environment.json"
    curves = pd.read_csv(curves_file) if curves_file.is_file() else pd.DataFrame()
    environment = json.loads(environment_file.read_text()) if environment_file.is_file() else {}
    missing = [r.name for r in study.runs(budget) if r.name not in set(runs["run"])]
    return Collected(cases, runs, missing, _metric_columns(cases, study), curves, environment, from_saved=True)


def _metric_columns(cases: pd.DataFrame, study: Study) -> list[str]:
    ident = ("variant", "run", "case_id", *study.grid)
    return [c for c in cases.columns if c not in ident and pd.api.types.is_numeric_dtype(cases[c])]


def _wall_seconds(folder: Path) -> float:
    log = folder / "study_run.jsonl"
    if not log.is_file():
        return float("nan")
    return float(sum(json.loads(line)["seconds"] for line in log.read_text().splitlines() if line.strip()))


def validation_column(columns: list[str], metric: str) -> str | None:
    """The logged validation series of ``metric``: ``val/<metric>``, else one ending in ``_<metric>``.

    A classification task logs ``val/patient_accuracy`` and ``val/slice_accuracy`` while its per-case table
    (one row per patient) calls the column ``accuracy``; the patient-level series is the one that matches.
    """
    if f"val/{metric}" in columns:
        return f"val/{metric}"
    candidates = sorted(c for c in columns if c.startswith("val/") and c.endswith(f"_{metric}"))
    return candidates[0] if candidates else None


def _curves(log: Path, metric: str) -> pd.DataFrame:
    """Long table (series, step, value) of a run's validation ``metric`` and training loss, one value per step."""
    if not log.is_file():
        return pd.DataFrame(columns=["series", "step", "value"])
    table = pd.read_csv(log)
    frames = []
    for column in (validation_column(list(table.columns), metric), "train/loss"):
        if column and column in table:
            series = table.dropna(subset=[column]).drop_duplicates("step", keep="last")
            frames.append(pd.DataFrame({"series": column, "step": series["step"], "value": series[column]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["series", "step", "value"])


def _environment(runs: pd.DataFrame) -> dict[str, Any]:
    """Machine, packages and commit from the first run's manifest (kept in the report as environment.json)."""
    for folder in runs.get("folder", []):
        path = Path(folder) / "manifest.json"
        if path.is_file():
            manifest = json.loads(path.read_text())
            machine, packages = manifest.get("machine", {}), manifest.get("packages", {})
            return {
                "cpu_count": machine.get("cpu_count"),
                "gpus": machine.get("gpus") or "none",
                **{k: packages.get(k) for k in ("torch", "monai", "lightning")},
                "commit": (manifest.get("git") or {}).get("commit"),
            }
    return {}


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
    """Mean and std (ddof 1) over runs of each run's mean over cases: numeric ``<m>_mean``, ``<m>_std``, ``runs``.

    The std is NaN for a variant with a single run (nothing to measure), never 0.
    """
    per_run = cases.groupby(["variant", "run"])[metrics].mean()
    rows = []
    for variant in variants:
        if variant not in per_run.index.get_level_values(0):
            continue
        runs = per_run.loc[variant]
        row: dict[str, Any] = {"variant": variant, "runs": len(runs)}
        for m in metrics:
            row[f"{m}_mean"] = runs[m].mean()
            row[f"{m}_std"] = runs[m].std(ddof=1)
        rows.append(row)
    return pd.DataFrame(rows)


def paired_differences(
    cases: pd.DataFrame, metric: str, variant: str, baseline: str, points: list[str]
) -> pd.DataFrame:
    """``variant - baseline`` of ``metric`` as runs x cases, paired by grid point (same fold, seed) and case.

    Only the factors both variants vary pair them: a fold ensemble (one run per seed, no fold) is paired with
    the baseline's runs of the same seed, averaged over their folds.
    """
    varied = [p for p in points if all(cases.loc[cases["variant"] == v, p].notna().any() for v in (variant, baseline))]

    def matrix(name: str) -> pd.DataFrame:
        rows = cases[cases["variant"] == name].assign(_point="single")
        return rows.pivot_table(index=varied or "_point", columns="case_id", values=metric, aggfunc="mean")

    diffs = matrix(variant) - matrix(baseline)
    return diffs.dropna(how="all").dropna(axis=1, how="all")


def compare(diffs: np.ndarray, metric: str, resamples: int) -> dict[str, Any]:
    """Test, effect and interval of one comparison; the direction is the test's own (never the mean's)."""
    units = case_units(diffs)
    test = signed_rank(units)
    hl = hodges_lehmann(units)
    low, high = hierarchical_bootstrap(diffs, resamples=resamples) if resamples else (np.nan, np.nan)
    lower = lower_is_better(metric)
    return {
        "runs": int((~np.isnan(diffs)).any(axis=1).sum()),
        "cases": len(units),
        "hl_diff": hl,  # Hodges-Lehmann estimate of variant - baseline
        "ci_low": low,
        "ci_high": high,
        "cases_improved": test.negative if lower else test.positive,
        "cases_worsened": test.positive if lower else test.negative,
        "w_plus": test.w_plus,
        "w_minus": test.w_minus,
        "mean_diff": float(units.mean()),
        "median_diff": float(np.median(units)),
        "p": test.p,
        # the sign of HL; where it is exactly 0 (ties), the sign of W+ - W-, as the test sees it
        "direction": float(np.sign(hl) or np.sign(test.w_plus - test.w_minus)),
    }


def verdict(direction: float, p_holm: float, metric: str) -> str:
    if p_holm >= SIGNIFICANCE or direction == 0:
        return NO_DIFFERENCE
    improves = direction < 0 if lower_is_better(metric) else direction > 0
    return "better" if improves else "worse"


def paired_tests(
    cases: pd.DataFrame,
    metrics: list[str],
    variants: list[str],
    baseline: str,
    points: list[str] | None = None,
    seed_factor: str | None = None,
    resamples: int = 2000,
) -> pd.DataFrame:
    """Every variant against the baseline, paired over cases (each case averaged over the runs of a variant).

    Wilcoxon signed-rank test, Holm-corrected over the variants compared separately for each metric; the
    Hodges-Lehmann estimate gives effect and direction, a hierarchical bootstrap over runs and cases its 95%
    interval. ``points`` are the grid factors that pair runs (default: every one in ``cases``);
    ``seed_factor`` names the factor whose values are tested one by one for the replication column.
    """
    points = [p for p in (points or []) if p in cases]
    present = set(cases["variant"])
    rows = []
    for metric in metrics:
        if baseline not in present:
            break
        metric_rows = []
        for variant in variants:
            if variant == baseline or variant not in present:
                continue
            diffs = paired_differences(cases, metric, variant, baseline, points).to_numpy()
            ident = {"metric": metric, "variant": variant, "baseline": baseline}
            metric_rows.append({**ident, **compare(diffs, metric, resamples)})
        for row, adjusted in zip(metric_rows, holm([r["p"] for r in metric_rows])):
            row["p_holm"] = adjusted
            row["verdict"] = verdict(row.pop("direction"), adjusted, metric)
        rows += metric_rows
    table = pd.DataFrame(rows)
    if not table.empty:
        table = with_seed_replication(table, cases, metrics, variants, baseline, points, seed_factor)
    return table


def with_seed_replication(
    table: pd.DataFrame,
    cases: pd.DataFrame,
    metrics: list[str],
    variants: list[str],
    baseline: str,
    points: list[str],
    seed_factor: str | None,
) -> pd.DataFrame:
    """Whether each verdict holds in every seed on its own (the same test on that seed's runs alone)."""
    seeds = sorted(cases[seed_factor].unique()) if seed_factor and seed_factor in cases else []
    table = table.assign(seeds=len(seeds) or 1, seeds_agreeing=np.nan)
    if len(seeds) < 2:
        table["replication"] = table["runs"].map(
            lambda n: (
                "1 run: seed variation not measured" if n == 1 else f"1 seed ({n} runs): seed variation not measured"
            )
        )
        return table
    agreeing = pd.Series(0, index=table.index)
    for seed in seeds:
        alone = paired_tests(cases[cases[seed_factor] == seed], metrics, variants, baseline, points, resamples=0)
        merged = table[["metric", "variant"]].merge(alone[["metric", "variant", "verdict"]], how="left")
        agreeing += (merged["verdict"].to_numpy() == table["verdict"].to_numpy()).astype(int)
    table["seeds_agreeing"] = agreeing
    table["replication"] = [f"replicates in {k}/{len(seeds)} seeds" for k in agreeing]
    return table


def seed_factor(study: Study) -> str | None:
    """The grid factor that varies the seed (not a condition): its values are the replications."""
    return next((f for f in study.grid if "seed" in f and f not in study.conditions), None)


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
