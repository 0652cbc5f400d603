"""Write a study report: results tables (CSV), Markdown and HTML pages, figures, and optionally wandb."""

from __future__ import annotations

import html
import json
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from medlight.studies import figures
from medlight.studies.report import (
    by_condition,
    collect,
    cost_table,
    leaders,
    lower_is_better,
    paired_tests,
    per_condition,
    summary_table,
    with_family_means,
)
from medlight.studies.runner import DEFAULT_RUNS_ROOT
from medlight.studies.spec import Study


def make_report(
    study: Study,
    budget: str,
    runs_root: Path = DEFAULT_RUNS_ROOT,
    out_dir: Path | None = None,
    wandb_mode: str = "disabled",
) -> Path:
    """Collect every finished run of ``budget`` and write the report; returns the Markdown file."""
    out = out_dir or study.folder / "reports" / budget
    out.mkdir(parents=True, exist_ok=True)
    collected = collect(study, budget, runs_root)
    if collected.cases.empty:
        raise SystemExit(f"no finished run of budget {budget!r} under {runs_root / study.name / budget}")
    cases, families = with_family_means(collected)
    headline = list(families)
    per_class = [c for c in collected.metric_columns if c not in families]
    variants = study.variants
    collected.cases.to_csv(out / "results.csv", index=False)
    collected.runs.drop(columns=["folder"]).to_csv(out / "runs.csv", index=False)
    parts = by_condition(cases, study.conditions)  # a condition (e.g. acceleration) is never pooled
    summary = per_condition(parts, summary_table, headline, variants)
    detail = per_condition(parts, summary_table, per_class, variants) if per_class else pd.DataFrame()
    tests = per_condition(parts, paired_tests, headline, variants, study.baseline) if study.baseline else pd.DataFrame()
    best = [  # (metric, condition, leading variant)
        (m, "".join(f", {k} {v}" for k, v in condition.items()), variant)
        for condition, part in parts
        for m, variant in leaders(part, headline).items()
    ]
    primary = study.primary_metric if study.primary_metric in cases else headline[0]
    figs = {
        "box": figures.box_plot(cases, primary, variants, out / "box_per_case.png"),
        "curves": figures.learning_curves(collected.runs, primary, variants, out / "learning_curves.png"),
        "overlays": figures.overlays(cases, collected.runs, primary, variants, study.baseline, out / "overlays.png"),
    }
    sections = _sections(study, budget, collected, summary, detail, tests, best, figs)
    (out / "report.md").write_text(_markdown(study, sections))
    (out / "report.html").write_text(_html(study, sections))
    summary.to_csv(out / "summary.csv", index=False)
    if not tests.empty:
        tests.to_csv(out / "paired_tests.csv", index=False)
    if wandb_mode != "disabled":
        _to_wandb(study, budget, collected.cases, summary, figs, wandb_mode, out)
    return out / "report.md"


def _sections(study, budget, collected, summary, detail, tests, best, figs) -> list[tuple[str, Any]]:
    runs = collected.runs
    total_h = runs["wall_seconds"].sum() / 3600
    manifest = _first_manifest(runs)
    facts = [
        f"Budget **{budget}**: {json.dumps(study.budgets.get(budget) or {})}",
        f"Runs: {len(runs)} finished" + _missing(collected.missing),
        "Grid: "
        + (", ".join(f"{k} = {v['values']}" for k, v in study.grid.items()) or "none")
        + (f" (conditions, reported apart: {', '.join(study.conditions)})" if study.conditions else ""),
        f"Wall time of all runs: {total_h:.2f} h (sum over runs, one after the other)",
    ]
    if manifest:
        pk = manifest.get("packages", {})
        facts.append(
            f"Machine: {manifest.get('machine', {}).get('cpu_count')} CPU cores, GPUs "
            f"{manifest.get('machine', {}).get('gpus') or 'none'}; torch {pk.get('torch')}, "
            f"MONAI {pk.get('monai')}, Lightning {pk.get('lightning')}; commit "
            f"{(manifest.get('git') or {}).get('commit')}"
        )
    out: list[tuple[str, Any]] = [("facts", facts)]
    out.append(("Results: mean ± std over runs (each run: mean over its test cases)", summary))
    if not detail.empty:
        out.append(("Per class", detail))
    cost = cost_table(runs, study.variants)
    if not cost.empty:
        out.append(("Cost: parameters, training seconds per epoch/step, network seconds per test case", cost))
    out.append(
        (
            "Leader per metric",
            [f"{m}{where}: **{v}**" + (" (lower is better)" if lower_is_better(m) else "") for m, where, v in best],
        )
    )
    if not tests.empty:
        shown = tests.assign(
            **{c: tests[c].map(lambda x: f"{x:.4g}") for c in ("mean_diff", "median_diff", "p", "p_holm")}
        )
        out.append(
            (
                f"Paired tests against {study.baseline} (Wilcoxon signed-rank over cases, "
                "each case averaged over runs; Holm-corrected per metric"
                + (f" and {', '.join(study.conditions)})" if study.conditions else ")"),
                shown,
            )
        )
    for key, title in (
        ("box", "Per-case distribution"),
        ("curves", "Learning curves"),
        ("overlays", "Qualitative overlays (lowest, median, highest case of the baseline)"),
    ):
        if figs.get(key) is not None:
            out.append((title, figs[key]))
    per_run = runs.drop(columns=["folder"]).round(4)
    out.append(("Every run", per_run))
    out.append(
        (
            "Reproduce",
            [
                f"`medlight study run {shlex.quote(str(study.folder))} --budget {budget}`",
                f"`medlight study report {shlex.quote(str(study.folder))} --budget {budget}`",
            ],
        )
    )
    return out


def _missing(names: list[str]) -> str:
    if not names:
        return ""
    return f", {len(names)} missing ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"


def _first_manifest(runs: pd.DataFrame) -> dict | None:
    for folder in runs.get("folder", []):
        path = Path(folder) / "manifest.json"
        if path.is_file():
            return json.loads(path.read_text())
    return None


def _markdown(study: Study, sections: list[tuple[str, Any]]) -> str:
    lines = [f"# Study: {study.name}", "", study.description, ""]
    for title, body in sections:
        if title != "facts":
            lines += [f"## {title}", ""]
        if isinstance(body, pd.DataFrame):
            lines += [body.to_markdown(index=False) if _has_tabulate() else body.to_string(index=False), ""]
        elif isinstance(body, Path):
            lines += [f"![{title}]({body.name})", ""]
        else:
            lines += [f"- {item}" for item in body] + [""]
    return "\n".join(lines)


def _html(study: Study, sections: list[tuple[str, Any]]) -> str:
    parts = [
        f"<html><head><meta charset='utf-8'><title>{html.escape(study.name)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}</style></head><body>",
        f"<h1>Study: {html.escape(study.name)}</h1><p>{html.escape(study.description)}</p>",
    ]
    for title, body in sections:
        if title != "facts":
            parts.append(f"<h2>{html.escape(title)}</h2>")
        if isinstance(body, pd.DataFrame):
            parts.append(body.to_html(index=False))
        elif isinstance(body, Path):
            parts.append(f"<img src='{body.name}' style='max-width:100%'>")
        else:
            parts.append("<ul>" + "".join(f"<li>{html.escape(str(i)).replace('**', '')}</li>" for i in body) + "</ul>")
    return "\n".join(parts) + "</body></html>\n"


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def _to_wandb(
    study: Study, budget: str, cases: pd.DataFrame, summary: pd.DataFrame, figs: dict, mode: Any, out: Path
) -> None:
    try:
        import wandb

        run = wandb.init(
            project="medlight",
            group=f"{study.name}/{budget}",
            name=f"{study.name}-{budget}-report",
            job_type="report",
            mode=mode,
            dir=str(out),
            settings=wandb.Settings(console="off"),
        )
        run.log(
            {
                "results": wandb.Table(dataframe=cases),
                "summary": wandb.Table(dataframe=summary),
                **{k: wandb.Image(str(v)) for k, v in figs.items() if v is not None},
            }
        )
        run.finish()
    except Exception as err:  # the report on disk is what matters; the dashboard is a copy
        print(f"wandb: could not log the report ({type(err).__name__}: {err})")
