"""Figures of a study report: box plots, learning curves and qualitative overlays (matplotlib, PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from medlight.data.datalist import discover  # noqa: E402

LABEL_COLOURS = ListedColormap(["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0"])


def box_plot(cases: pd.DataFrame, metric: str, variants: list[str], out: Path) -> Path:
    """Per-case ``metric`` (averaged over runs) as one box per variant."""
    per_case = cases.groupby(["variant", "case_id"])[metric].mean()
    present = [v for v in variants if v in per_case.index.get_level_values(0)]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(present), 4))
    ax.boxplot([per_case.loc[v].dropna().to_numpy() for v in present], showmeans=True)
    ax.set_xticks(range(1, len(present) + 1), present, rotation=20, ha="right")
    ax.set_ylabel(f"{metric} per case (mean over runs)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def learning_curves(runs: pd.DataFrame, metric: str, variants: list[str], out: Path) -> Path | None:
    """``val/<metric>`` and ``train/loss`` against step, mean over runs with a min-max band, per variant."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    drawn = False
    for variant in variants:
        curves: dict[str, list[pd.Series]] = {"val": [], "train": []}
        for folder in runs.loc[runs["variant"] == variant, "folder"]:
            log = Path(folder) / "metrics.csv"
            if not log.is_file():
                continue
            table = pd.read_csv(log)
            for key, column in (("val", f"val/{metric}"), ("train", "train/loss")):
                if column in table:
                    series = table.dropna(subset=[column]).drop_duplicates("step", keep="last")
                    curves[key].append(series.set_index("step")[column])
        for ax, key in zip(axes, ("val", "train")):
            if not curves[key]:
                continue
            frame = pd.concat(curves[key], axis=1).sort_index().interpolate(limit_area="inside")
            ax.plot(frame.index, frame.mean(axis=1), label=variant)
            ax.fill_between(frame.index, frame.min(axis=1), frame.max(axis=1), alpha=0.15)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    axes[0].set_title(f"validation {metric}")
    axes[1].set_title("training loss")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


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
    sources = _sources(next(iter(first_runs.values())))
    if sources is None or not all((f / "predictions").is_dir() for f in first_runs.values()):
        return None
    cols = 2 + len(first_runs)
    fig, axes = plt.subplots(len(picks), cols, figsize=(2.2 * cols, 2.4 * len(picks)), squeeze=False)
    for row, case_id in zip(axes, picks):
        if case_id not in sources:
            continue
        image_path, label_path = sources[case_id]
        image = _read(image_path).astype(np.float32)
        image = image[..., 0] if image.ndim == 4 else image
        label = _read(label_path)
        z = int(np.argmax((label > 0).sum(axis=(0, 1)))) if label.ndim == 3 else None
        panels = [("image", None), ("ground truth", label)]
        for variant, folder in first_runs.items():
            pred_file = folder / "predictions" / f"{case_id}.nii.gz"
            panels.append((variant, _read(pred_file) if pred_file.is_file() else None))
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
            ax.set_title(f"{title}" if title != "image" else f"{case_id}", fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _read(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)  # type: ignore[attr-defined]


def _slice(volume: np.ndarray, z: int | None) -> np.ndarray:
    return volume if z is None else volume[..., z]


def _sources(run_folder: Path) -> dict[str, tuple[Path, Path]] | None:
    """case id -> (first image file, label file), from the dataset named in a run's config.yaml."""
    config = run_folder / "config.yaml"
    if not config.is_file():
        return None
    data = (yaml.safe_load(config.read_text()).get("data") or {}).get("init_args") or {}
    dataset = data.get("dataset")
    if not dataset or not Path(dataset).is_dir():
        return None
    desc = discover(dataset, {int(k): v for k, v in data["labels"].items()} if data.get("labels") else None)
    return {c.case_id: (c.images[0], c.label) for c in desc.cases if c.label is not None}
