"""Per-case segmentation metrics (MONAI functions) and a torchmetrics store that gathers them under DDP.

Conventions for empty structures, per class:

* Dice, IoU: 1 if prediction and ground truth are both empty, 0 if only one is.
* precision = tp / (tp + fp); when nothing is predicted: 1 if the structure is absent too, else 0.
* recall = tp / (tp + fn); when the structure is absent: 1 if nothing is predicted, else 0.
* HD95 (mm): 0 if both are empty; the diagonal of the volume in mm if exactly one is empty, so that a
  missed structure counts as the worst possible distance instead of vanishing from the mean.
* NSD, normalised surface Dice (MONAI ``compute_surface_dice``; Nikolov et al. 2021, arXiv:2111.05408): the share
  of both boundaries lying within a tolerance (mm) of the other. 1 if both are empty, 0 if only one is. The
  default tolerance of 1 mm (:data:`NSD_TOLERANCE_MM`) is a placeholder, not a clinical choice: set it per class
  to the inter-rater variability of each structure, as Nikolov et al. and Metrics Reloaded recommend.

Voxel counts per class (:data:`COUNTS`: TP, FP, FN, TN, reference and predicted size, as in nnU-Net's
``summary.json``) are a second table (:func:`case_counts`), kept out of the metrics so that reports do not test them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.metrics import (
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    compute_surface_dice,
    get_confusion_matrix,
)
from monai.networks.utils import one_hot
from torch import Tensor
from torchmetrics import Metric

from medlight.metrics.spread import std_over_cases

METRICS = ("dice", "iou", "precision", "recall", "hd95", "nsd")
COUNTS = ("tp", "fp", "fn", "tn", "n_ref", "n_pred")
NSD_TOLERANCE_MM = 1.0


def case_metrics(
    pred: Tensor,
    target: Tensor,
    num_classes: int,
    spacing: Sequence[float] | None = None,
    nsd_tolerance: float | Sequence[float] = NSD_TOLERANCE_MM,
) -> Tensor:
    """Metrics of one case.

    Args:
        pred: predicted label map, shape (1, *spatial), integer values.
        target: ground-truth label map, shape (1, *spatial).
        num_classes: classes including background.
        spacing: voxel size in mm (for HD95 and NSD); 1 mm if None.
        nsd_tolerance: NSD tolerance in mm, one value for every foreground class or one per class.

    Returns:
        Tensor of shape (len(METRICS), num_classes - 1): one row per metric, one column per foreground class.
    """
    p, g = _one_hot_pair(pred, target, num_classes)
    dice = compute_dice(p, g, include_background=False, ignore_empty=False)[0]
    iou = compute_iou(p, g, include_background=False, ignore_empty=False)[0]
    tp, fp, _, fn = get_confusion_matrix(p, g, include_background=False)[0].unbind(-1)
    precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp(min=1), (fn == 0).float())
    recall = torch.where(tp + fn > 0, tp / (tp + fn).clamp(min=1), (fp == 0).float())
    spacing = list(spacing) if spacing is not None else [1.0] * (p.dim() - 2)
    hd95 = _hd95(p, g, spacing)
    nsd = _nsd(p, g, spacing, nsd_tolerance)
    return torch.stack([dice, iou, precision, recall, hd95, nsd]).float()


def case_counts(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Voxel counts of one case: Tensor (len(COUNTS), num_classes - 1) of TP, FP, FN, TN, reference and predicted
    size per foreground class (nnU-Net's ``TP``, ``FP``, ``FN``, ``TN``, ``n_ref``, ``n_pred``)."""
    p, g = _one_hot_pair(pred, target, num_classes)
    tp, fp, tn, fn = get_confusion_matrix(p, g, include_background=False)[0].unbind(-1)
    return torch.stack([tp, fp, fn, tn, tp + fn, tp + fp]).double()


def _one_hot_pair(pred: Tensor, target: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    if pred.shape != target.shape or pred.shape[0] != 1:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must both be (1, *spatial)")
    p = one_hot(pred[None].long().as_subclass(Tensor), num_classes)
    g = one_hot(target[None].long().as_subclass(Tensor), num_classes)
    return p, g


def _nsd(p: Tensor, g: Tensor, spacing: list[float], tolerance: float | Sequence[float]) -> Tensor:
    classes = p.shape[1] - 1
    tolerances = [float(tolerance)] * classes if isinstance(tolerance, (int, float)) else [float(t) for t in tolerance]
    if len(tolerances) != classes:
        raise ValueError(f"nsd_tolerance has {len(tolerances)} values for {classes} foreground classes")
    out = []
    for c in range(1, p.shape[1]):
        has_p, has_g = bool(p[:, c].any()), bool(g[:, c].any())
        if has_p and has_g:
            pc, gc = p[:, c : c + 1], g[:, c : c + 1]
            out.append(float(compute_surface_dice(pc, gc, [tolerances[c - 1]], True, spacing=spacing)[0, 0]))
        else:
            out.append(1.0 if has_p == has_g else 0.0)
    return torch.tensor(out)


def _hd95(p: Tensor, g: Tensor, spacing: list[float]) -> Tensor:
    diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(p.shape[2:], spacing)))
    out = []
    for c in range(1, p.shape[1]):
        has_p, has_g = bool(p[:, c].any()), bool(g[:, c].any())
        if has_p and has_g:
            out.append(
                float(
                    compute_hausdorff_distance(
                        p[:, c : c + 1], g[:, c : c + 1], include_background=True, percentile=95, spacing=spacing
                    )[0, 0]
                )
            )
        else:
            out.append(0.0 if has_p == has_g else diagonal)
    return torch.tensor(out)


class PerCaseMetrics(Metric):
    """Keeps one row of metrics per case; ``compute`` returns every case, gathered across processes.

    Each case must be scored exactly once per epoch (the data modules give every rank a disjoint share);
    a case seen twice is a bug and raises instead of silently weighting that case double.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("case_index", default=[], dist_reduce_fx="cat")
        self.add_state("values", default=[], dist_reduce_fx="cat")

    case_index: list[Tensor]
    values: list[Tensor]

    def update(self, case_index: Tensor, values: Tensor) -> None:
        self.case_index.append(case_index.reshape(-1).long())
        self.values.append(
            values.reshape(1, *values.shape[-2:]).to(torch.float64 if values.dtype == torch.float64 else torch.float32)
        )

    def compute(self) -> tuple[Tensor, Tensor]:
        index = _cat(self.case_index)
        values = _cat(self.values)
        if index.numel() != index.unique().numel():
            raise RuntimeError("a case was scored more than once in one evaluation")
        order = index.argsort()
        return index[order], values[order]

    def gather(self) -> tuple[Tensor, Tensor]:
        """``compute()`` then ``reset()``: case indices (cases,) and values (cases, classes, metrics), also for a
        single case (torchmetrics squeezes a one-element result to 0-d)."""
        index, values = self.compute()
        self.reset()
        index = index.reshape(-1)
        return index, values.reshape(index.numel(), *values.shape[-2:])


def _cat(state: list[Tensor] | Tensor) -> Tensor:
    return torch.cat(state) if isinstance(state, list) else state


def summarise(values: Tensor, class_names: Sequence[str], with_std: bool = False) -> dict[str, float]:
    """Means over cases: ``<metric>_<class>`` and ``<metric>`` (mean over classes), NaN-aware.

    With ``with_std``, also ``<metric>_<class>_std`` and ``<metric>_std`` (:func:`std_over_cases` of the class
    mean).
    """
    arr = values.cpu().numpy().astype(np.float64)
    out: dict[str, float] = {}
    if not len(arr):
        return {f"{m}_{c}": float("nan") for m in METRICS for c in [*class_names]} | {m: float("nan") for m in METRICS}
    for m, metric in enumerate(METRICS):
        per_class = np.nanmean(arr[:, m, :], axis=0)
        for c, name in enumerate(class_names):
            out[f"{metric}_{name}"] = float(per_class[c])
            if with_std:
                out[f"{metric}_{name}_std"] = std_over_cases(arr[:, m, c])
        out[metric] = float(np.nanmean(per_class))
        if with_std:
            out[f"{metric}_std"] = std_over_cases(np.nanmean(arr[:, m, :], axis=1))
    return out


def per_case_rows(
    case_ids: Sequence[str], values: Tensor, class_names: Sequence[str], names: Sequence[str] = METRICS
) -> list[dict]:
    """One flat dict per case: ``case_id`` and ``<metric>_<class>`` columns (``names``: METRICS or COUNTS)."""
    rows = []
    for cid, case_values in zip(case_ids, values.cpu().numpy()):
        row: dict = {"case_id": cid}
        for m, metric in enumerate(names):
            for c, name in enumerate(class_names):
                row[f"{metric}_{name}"] = int(case_values[m, c]) if names is COUNTS else float(case_values[m, c])
        rows.append(row)
    return rows


def format_summary(stage: str, summary: dict[str, float], class_names: Sequence[str], cases: int, out: Path) -> str:
    """Mean +- std (over cases) of every metric per class, as printed after the main job's test."""
    width = max(len(n) for n in [*class_names, "mean"]) + 2
    header = "".join(f"{(m + ' (mm)' if m == 'hd95' else m):>17s}" for m in METRICS)
    lines = [f"\n{stage}: {cases} held-out case(s); per-case tables in {out}", f"{'class':{width}s}{header}"]
    for name in [*class_names, None]:
        keys = [f"{m}_{name}" if name else m for m in METRICS]
        cells = "".join(f"{summary[k]:>10.3f} ± {summary.get(k + '_std', float('nan')):<5.3f}" for k in keys)
        lines.append(f"{(name or 'mean'):{width}s}{cells}")
    return "\n".join(lines)
