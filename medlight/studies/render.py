"""Write a study report: results tables (CSV, LaTeX), Markdown and HTML pages, figures, and optionally wandb.

Tables are kept numeric in the CSVs and formatted only here, when a page or a LaTeX table is written.
"""

from __future__ import annotations

import html
import json
import math
import shlex
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd

from medlight.studies import figures
from medlight.studies.report import (
    NO_DIFFERENCE,
    Collected,
    by_condition,
    collect,
    collect_saved,
    cost_table,
    leaders,
    lower_is_better,
    paired_tests,
    per_condition,
    seed_factor,
    summary_table,
    with_family_means,
)
from medlight.studies.runner import DEFAULT_RUNS_ROOT
from medlight.studies.spec import Study
from medlight.studies.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED

Block: TypeAlias = "str | pd.DataFrame | Path"  # a bullet, a table or a figure
STD_NOTE = "over runs, ddof 1, of each run's mean over its test cases; a single run shows its mean alone"
FIGURE_FILES = {"box": "box_per_case", "curves": "learning_curves", "overlays": "overlays"}


def make_report(
    study: Study,
    budget: str,
    runs_root: Path = DEFAULT_RUNS_ROOT,
    out_dir: Path | None = None,
    wandb_mode: str = "disabled",
) -> Path:
    """Collect every finished run of ``budget`` and write the report; returns the Markdown file.

    Without any run folder, a report folder that already holds ``results.csv`` and ``runs.csv`` is re-rendered
    from them (a committed report, made where the runs were made).
    """
    out = out_dir or study.folder / "reports" / budget
    out.mkdir(parents=True, exist_ok=True)
    collected = collect(study, budget, runs_root)
    if collected.cases.empty:
        if not (out / "results.csv").is_file() or not (out / "runs.csv").is_file():
            raise SystemExit(f"no finished run of budget {budget!r} under {runs_root / study.name / budget}")
        print(f"no run folders under {runs_root / study.name / budget}: re-rendering from {out}/results.csv")
        collected = collect_saved(study, budget, out)
    else:
        _save_collected(collected, out)
    cases, families = with_family_means(collected)
    headline = list(families)
    per_class = [c for c in collected.metric_columns if c not in families]
    variants = study.variants
    parts = by_condition(cases, study.conditions)  # a condition (e.g. acceleration) is never pooled
    summary = per_condition(parts, summary_table, headline, variants)
    detail = per_condition(parts, summary_table, per_class, variants) if per_class else pd.DataFrame()
    tests = (
        per_condition(parts, paired_tests, headline, variants, study.baseline, list(study.grid), seed_factor(study))
        if study.baseline
        else pd.DataFrame()
    )
    best = [  # (metric, condition, leading variant)
        (m, "".join(f", {k} {v}" for k, v in condition.items()), variant)
        for condition, part in parts
        for m, variant in leaders(part, headline).items()
    ]
    primary = study.primary_metric if study.primary_metric in cases else headline[0]
    figs, notes = _figures(study, collected, cases, primary, out)
    shown_summary = format_summary(summary, headline)
    sections = _sections(study, budget, collected, shown_summary, detail, tests, best, figs, notes)
    (out / "report.md").write_text(_markdown(study, sections))
    (out / "report.html").write_text(_html(study, sections))
    summary.to_csv(out / "summary.csv", index=False)
    (out / "summary.tex").write_text(latex_table(shown_summary, f"mean $\\pm$ std over runs; {STD_NOTE}"))
    if not detail.empty:
        detail.to_csv(out / "summary_per_class.csv", index=False)
    if not tests.empty:
        tests.to_csv(out / "paired_tests.csv", index=False)
        (out / "paired_tests.tex").write_text(latex_table(format_tests(tests, study.conditions)))
    if wandb_mode != "disabled":
        _to_wandb(study, budget, collected.cases, summary, figs, wandb_mode, out)
    return out / "report.md"


def _save_collected(collected: Collected, out: Path) -> None:
    """What a later re-render needs without the run folders."""
    collected.cases.to_csv(out / "results.csv", index=False)
    collected.runs.drop(columns=["folder"]).to_csv(out / "runs.csv", index=False)
    if not collected.curves.empty:
        collected.curves.to_csv(out / "curves.csv", index=False)
    (out / "environment.json").write_text(json.dumps(collected.environment, indent=1) + "\n")


def _figures(
    study: Study, collected: Collected, cases: pd.DataFrame, primary: str, out: Path
) -> tuple[dict[str, Path | None], dict[str, str]]:
    """Every figure the collected numbers allow, and for the others a note that says why it is missing."""
    variants, conditions = study.variants, study.conditions
    figs: dict[str, Path | None] = {
        "box": figures.box_plot(cases, primary, variants, out / "box_per_case.png", conditions),
        "curves": figures.learning_curves(collected.curves, variants, out / "learning_curves.png", conditions),
        "overlays": None,
    }
    notes = {}
    if collected.curves.empty:
        notes["curves"] = "Not drawn: no learning curves were kept with this report (`curves.csv` is absent)."
    if not collected.from_saved:
        figs["overlays"] = figures.overlays(
            cases, collected.runs, primary, variants, study.baseline, out / "overlays.png"
        )
    elif (out / "overlays.png").is_file():  # predictions are not kept with a report: the earlier drawing stays
        figs["overlays"] = out / "overlays.png"
        notes["overlays"] = "Drawn from the run folders' predictions when the report was first made; not re-drawn."
    for key, path in figs.items():  # a figure that cannot be drawn again must not stay as if it were current
        if path is None:
            for fmt in figures.FORMATS:
                (out / f"{FIGURE_FILES[key]}.{fmt}").unlink(missing_ok=True)
    return figs, notes


def _fmt(value: float, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_summary(summary: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """``mean ± std`` per metric; a single run shows its mean alone (its spread over runs is not measured)."""
    keep = [c for c in summary.columns if not any(c == f"{m}_{s}" for m in metrics for s in ("mean", "std"))]
    shown = summary[keep].copy()
    for m in metrics:
        shown[m] = [
            _fmt(mean) if runs < 2 else f"{_fmt(mean)} ± {_fmt(std)}"
            for mean, std, runs in zip(summary[f"{m}_mean"], summary[f"{m}_std"], summary["runs"])
        ]
    return shown


def _signed(value: float) -> str:
    if math.isnan(value):
        return ""
    return "0" if value == 0 else f"{value:+.3g}"


def format_tests(tests: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    rows = []
    for _, t in tests.iterrows():
        interval = f"[{_signed(t.ci_low)}, {_signed(t.ci_high)}]" if not math.isnan(t.ci_low) else ""
        rows.append(
            {
                **{c: t[c] for c in conditions},
                "metric": t.metric + (" (lower is better)" if lower_is_better(t.metric) else ""),
                "variant": t.variant,
                "runs": t.runs,
                "cases": t.cases,
                "HL diff": _signed(t.hl_diff),
                "95% interval": interval,
                "cases improved": f"{t.cases_improved}/{t.cases}",
                "p": f"{t.p:.3g}",
                "p_holm": f"{t.p_holm:.3g}",
                "verdict": t.verdict,
                "seeds": t.replication,
            }
        )
    return pd.DataFrame(rows)


def latex_table(table: pd.DataFrame, note: str = "") -> str:
    """A booktabs LaTeX table of an already formatted table (pandas ``to_latex``, which needs jinja2)."""
    escaped = table.rename(columns=_latex_text).apply(
        lambda col: col.map(lambda v: _latex_text(v) if isinstance(v, str) else v)
    )
    return f"% {note}\n" * bool(note) + escaped.to_latex(index=False, escape=False)


def _latex_text(text: Any) -> str:
    out = str(text)
    for char, repl in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        out = out.replace(char, repl)
    return out.replace("±", r"$\pm$")


def _sections(study, budget, collected, summary, detail, tests, best, figs, notes) -> list[tuple[str, list[Block]]]:
    runs = collected.runs
    total_h = runs["wall_seconds"].sum() / 3600
    facts: list[Block] = [
        f"Budget **{budget}**: {json.dumps(study.budgets.get(budget) or {})}",
        f"Runs: {len(runs)} finished" + _missing(collected.missing),
        "Grid: "
        + (", ".join(f"{k} = {v['values']}" for k, v in study.grid.items()) or "none")
        + (f" (conditions, reported apart: {', '.join(study.conditions)})" if study.conditions else ""),
        f"Wall time of all runs: {total_h:.2f} h (sum over runs, one after the other)",
    ]
    env = collected.environment
    if env:
        facts.append(
            f"Machine: {env.get('cpu_count')} CPU cores, GPUs {env.get('gpus')}; torch {env.get('torch')}, "
            f"MONAI {env.get('monai')}, Lightning {env.get('lightning')}; commit {env.get('commit')}"
        )
    if collected.from_saved:
        facts.append("Rendered from the report's `results.csv` and `runs.csv` (the run folders were not present)")
    out: list[tuple[str, list[Block]]] = [("facts", facts)]
    out.append(("Results: mean ± std over runs", [f"std: {STD_NOTE}", summary]))
    if not detail.empty:
        out.append(("Per class", [format_summary(detail, [c[: -len("_mean")] for c in detail if c.endswith("_mean")])]))
    cost = cost_table(runs, study.variants)
    if not cost.empty:
        out.append(("Cost: parameters, training seconds per epoch/step, network seconds per test case", [cost]))
    out.append(
        (
            "Leader per metric (best mean)",
            [f"{m}{where}: **{v}**" + (" (lower is better)" if lower_is_better(m) else "") for m, where, v in best],
        )
    )
    if not tests.empty:
        out.append((f"Paired tests against {study.baseline}", [*_method(study), format_tests(tests, study.conditions)]))
    for key, title in (
        ("box", "Per-case distribution"),
        ("curves", "Learning curves"),
        ("overlays", "Qualitative overlays (lowest, median, highest case of the baseline)"),
    ):
        blocks: list[Block] = [notes[key]] if key in notes else []
        if figs.get(key) is not None:
            blocks.append(figs[key])
        if blocks:
            out.append((title, blocks))
    if any(figs.values()):
        out.append(("Figure files", ["Each figure is also written as PDF and SVG beside its PNG (same name)."]))
    per_run = runs.drop(columns=["folder"], errors="ignore").round(4)
    run_note = (
        "`*_std` columns: sample std (ddof 1) over that run's test cases, as the task wrote it in "
        "`test_summary.json`; the summary tables' ± is the sample std over runs"
    )
    out.append(("Every run", [run_note, per_run]))
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


def _method(study: Study) -> list[Block]:
    where = f" and per {', '.join(study.conditions)}" if study.conditions else ""
    return [
        "Wilcoxon signed-rank test over cases, each case's difference averaged over the paired runs (same grid "
        f"point); Holm-corrected over the variants, per metric{where}; verdicts at p_holm < 0.05",
        "HL diff: Hodges-Lehmann estimate of variant - baseline (median of the Walsh averages): its sign is the "
        "direction of the verdict; cases improved: cases whose difference favours the variant",
        f"95% interval: hierarchical bootstrap of the HL estimate ({BOOTSTRAP_RESAMPLES} resamples, seed "
        f"{BOOTSTRAP_SEED}): runs drawn with replacement, then cases; with one run, cases alone",
        "seeds: whether the same test on each seed's runs alone gives the same verdict",
        f"verdicts: better, worse, {NO_DIFFERENCE}",
    ]


def _missing(names: list[str]) -> str:
    if not names:
        return ""
    return f", {len(names)} missing ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"


def _markdown(study: Study, sections: list[tuple[str, list[Block]]]) -> str:
    lines = [f"# Study: {study.name}", "", study.description, ""]
    for title, blocks in sections:
        if title != "facts":
            lines += [f"## {title}", ""]
        for i, block in enumerate(blocks):
            if isinstance(block, pd.DataFrame):
                lines += [block.to_markdown(index=False, disable_numparse=True), ""]
            elif isinstance(block, Path):
                lines += [f"![{title}]({block.name})", ""]
            else:
                lines.append(f"- {block}")
                if i + 1 == len(blocks) or not isinstance(blocks[i + 1], str):
                    lines.append("")
    return "\n".join(lines)


def _html(study: Study, sections: list[tuple[str, list[Block]]]) -> str:
    parts = [
        "<!DOCTYPE html>",
        f"<html lang='en'><head><meta charset='utf-8'><title>{html.escape(study.name)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}</style></head><body>",
        f"<h1>Study: {html.escape(study.name)}</h1><p>{html.escape(study.description)}</p>",
    ]
    for title, blocks in sections:
        if title != "facts":
            parts.append(f"<h2>{html.escape(title)}</h2>")
        bullets = [html.escape(b).replace("**", "") for b in blocks if isinstance(b, str)]
        if bullets:
            parts.append("<ul>" + "".join(f"<li>{b}</li>" for b in bullets) + "</ul>")
        for block in blocks:
            if isinstance(block, pd.DataFrame):
                parts.append(block.to_html(index=False))
            elif isinstance(block, Path):
                parts.append(f"<img src='{block.name}' alt='{html.escape(title)}' style='max-width:100%'>")
    return "\n".join(parts) + "</body></html>\n"


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
