"""Figures of a study report: box plots, learning curves and qualitative overlays (matplotlib; PNG, PDF, SVG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from medlight.data.datalist import discover  # noqa: E402

LABEL_COLOURS = ListedColormap(["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0"])
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
FORMATS = ("png", "pdf", "svg")
BOX_KEY = [
    Line2D([], [], color="black", label="median"),
    Line2D([], [], marker="^", linestyle="", markerfacecolor="white", markeredgecolor="black", label="mean"),
]  # PNG for the pages, PDF and SVG for a paper


def variant_styles(variants: list[str]) -> dict[str, dict[str, Any]]:
    """One colour and marker per variant, the same in every figure: tab10 up to 10 variants, tab20 beyond.

    tab20 alone keeps 20 variants apart; the markers tell neighbours of a pair (dark/light) apart in print.
    """
    cmap = plt.get_cmap("tab10" if len(variants) <= 10 else "tab20")
    return {v: {"color": cmap(i % cmap.N), "marker": MARKERS[i % len(MARKERS)]} for i, v in enumerate(variants)}


def save(fig: Figure, out: Path) -> Path:
    """``out`` as PNG (200 dpi) with a PDF and an SVG beside it; returns the PNG."""
    dates = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}  # no timestamp: a re-render diffs only if it changed
    for fmt in FORMATS:
        fig.savefig(out.with_suffix(f".{fmt}"), dpi=200, bbox_inches="tight", metadata=dates.get(fmt))
    plt.close(fig)
    return out.with_suffix(".png")


def condition_title(condition: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in condition.items())


def _parts(frame: pd.DataFrame, conditions: list[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    if not conditions:
        return [({}, frame)]
    groups = frame.groupby(conditions, sort=True)
    return [(dict(zip(conditions, k if isinstance(k, tuple) else (k,))), part) for k, part in groups]


def box_plot(cases: pd.DataFrame, metric: str, variants: list[str], out: Path, conditions: list[str]) -> Path:
    """Per-case ``metric`` (averaged over runs) as one box per variant; one panel per condition, never pooled."""
    parts = _parts(cases, conditions)
    styles = variant_styles(variants)
    present = [v for v in variants if v in set(cases["variant"])]
    width = 1.6 + 0.6 * len(present)
    fig, axes = plt.subplots(1, len(parts), figsize=(width * len(parts), 4.4), squeeze=False)
    for ax, (condition, part) in zip(axes[0], parts):
        per_case = part.groupby(["variant", "case_id"])[metric].mean()
        shown = [v for v in present if v in per_case.index.get_level_values(0)]
        boxes = ax.boxplot(
            [per_case.loc[v].dropna().to_numpy() for v in shown],
            showmeans=True,
            patch_artist=True,
            medianprops={"color": "black"},
            meanprops={"marker": "^", "markerfacecolor": "white", "markeredgecolor": "black"},
        )
        for box, variant in zip(boxes["boxes"], shown):
            box.set(facecolor=styles[variant]["color"], alpha=0.6)
        ax.set_xticks(range(1, len(shown) + 1), shown, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"{metric} per case (mean over runs)")
        ax.set_title(condition_title(condition) or metric, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(handles=BOX_KEY, fontsize=7, loc="best")  # the variants are the tick labels
    fig.tight_layout()
    return save(fig, out)


def learning_curves(curves: pd.DataFrame, variants: list[str], out: Path, conditions: list[str]) -> Path | None:
    """Validation metric and training loss against step: mean over runs with a min-max band, per variant.

    ``curves`` is the long table of the report (``series``, ``step``, ``value`` per run); one row of panels
    per condition, each panel with its own legend.
    """
    if curves.empty:
        return None
    parts = _parts(curves, conditions)
    styles = variant_styles(variants)
    fig, axes = plt.subplots(len(parts), 2, figsize=(12, 4.2 * len(parts)), squeeze=False)
    for row, (condition, part) in zip(axes, parts):
        val_series = sorted(s for s in part["series"].unique() if s.startswith("val/"))
        for ax, series in zip(row, (val_series[0] if val_series else None, "train/loss")):
            _draw_series(ax, part[part["series"] == series], variants, styles)
            where = condition_title(condition)
            ax.set_title(f"{series or 'no validation series logged'}" + (f" ({where})" if where else ""), fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7, ncol=2 if len(variants) > 7 else 1)
    fig.tight_layout()
    return save(fig, out)


def _draw_series(ax: Axes, rows: pd.DataFrame, variants: list[str], styles: dict[str, dict[str, Any]]) -> None:
    for variant in variants:
        mine = rows[rows["variant"] == variant]
        if mine.empty:
            continue
        frame = mine.pivot_table(index="step", columns="run", values="value").sort_index()
        frame = frame.interpolate(limit_area="inside")
        style = styles[variant]
        ax.plot(
            frame.index,
            frame.mean(axis=1),
            label=variant,
            color=style["color"],
            marker=style["marker"],
            markersize=3,
            markevery=max(1, len(frame) // 8),
            linewidth=1.2,
        )
        if frame.shape[1] > 1:
            ax.fill_between(frame.index, frame.min(axis=1), frame.max(axis=1), color=style["color"], alpha=0.12)


def overlays(
    cases: pd.DataFrame,
    runs: pd.DataFrame,
    metric: str,
    variants: list[str],
    baseline: str | None,
    out: Path,
    n_cases: int = 3,
) -> Path | None:
    """Image, ground truth and every variant's prediction on the same slice, for a few test cases.

    Cases: the lowest, median and highest ``metric`` of the baseline (first variant if none); each variant's
    prediction comes from its first run (same fold and seed for all variants).
    """
    ref = baseline or variants[0]
    per_case = cases[cases["variant"] == ref].groupby("case_id")[metric].mean().sort_values()
    if per_case.empty:
        return None
    picks = list(dict.fromkeys(per_case.index[[0, len(per_case) // 2, -1]]))[:n_cases]
    first_runs = {
        v: Path(runs.loc[runs["variant"] == v, "folder"].iloc[0]) for v in variants if (runs["variant"] == v).any()
    }
    sources, names = _sources(next(iter(first_runs.values())))
    if sources is None or not all((f / "predictions").is_dir() for f in first_runs.values()):
        return None
    cols = 2 + len(first_runs)
    fig, axes = plt.subplots(len(picks), cols, figsize=(2.2 * cols, 2.5 * len(picks) + 0.5), squeeze=False)
    for row, case_id in zip(axes, picks):
        if case_id not in sources:
            continue
        image_path, label_path = sources[case_id]
        image = _read(image_path).astype(np.float32)
        image = image[..., 0] if image.ndim == 4 else image
        label = _read(label_path)
        z = int(np.argmax((label > 0).sum(axis=(0, 1)))) if label.ndim == 3 else None
        panels = [(str(case_id), None), ("ground truth", label)]
        for variant, folder in first_runs.items():
            pred_file = folder / "predictions" / f"{case_id}.nii.gz"
            score = _case_score(cases, runs, variant, case_id, metric)
            panels.append((f"{variant}\n{metric} {score:.3f}", _read(pred_file) if pred_file.is_file() else None))
        for ax, (title, mask) in zip(row, panels):
            ax.imshow(_slice(image, z).T, cmap="gray", origin="lower")
            if mask is not None:  # the same colour for the same label in every panel
                shown = np.ma.masked_equal(_slice(mask, z).T, 0)
                ax.imshow(
                    shown,
                    cmap=LABEL_COLOURS,
                    vmin=0.5,
                    vmax=LABEL_COLOURS.N + 0.5,
                    alpha=0.55,
                    origin="lower",
                    interpolation="nearest",
                )
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    handles = [Patch(color=LABEL_COLOURS(i - 1), label=n) for i, n in sorted(names.items()) if 0 < i <= LABEL_COLOURS.N]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles) or 1, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save(fig, out)


def _case_score(cases: pd.DataFrame, runs: pd.DataFrame, variant: str, case_id: str, metric: str) -> float:
    """``metric`` of one case in the variant's first run (the run whose prediction is drawn)."""
    first = runs.loc[runs["variant"] == variant, "run"].iloc[0]
    value = cases.loc[(cases["run"] == first) & (cases["case_id"] == case_id), metric]
    return float(value.iloc[0]) if len(value) else float("nan")


def _read(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)  # type: ignore[attr-defined]


def _slice(volume: np.ndarray, z: int | None) -> np.ndarray:
    return volume if z is None else volume[..., z]


def _sources(run_folder: Path) -> tuple[dict[str, tuple[Path, Path]] | None, dict[int, str]]:
    """case id -> (first image file, label file), and label value -> name, from a run's config.yaml."""
    config = run_folder / "config.yaml"
    if not config.is_file():
        return None, {}
    data = (yaml.safe_load(config.read_text()).get("data") or {}).get("init_args") or {}
    dataset = data.get("dataset")
    if not dataset or not Path(dataset).is_dir():
        return None, {}
    labels = {int(k): str(v) for k, v in data["labels"].items()} if data.get("labels") else None
    desc = discover(dataset, labels)
    return {c.case_id: (c.images[0], c.label) for c in desc.cases if c.label is not None}, dict(desc.labels)
