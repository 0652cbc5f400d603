"""Instance segmentation metrics on label maps (0 = background, each object its own positive integer).

* detection F1 at IoU 0.5: a predicted and a true object match when their IoU exceeds 0.5 (such a match
  is unique, since two objects cannot both overlap one object by more than half); F1 = 2TP / (2TP + FP + FN);
* panoptic quality (Kirillov et al. 2019): PQ = sum of matched IoUs / (TP + FP/2 + FN/2) = SQ x DQ, with
  SQ the mean IoU of matches and DQ the detection F1;
* aggregated Jaccard index (Kumar et al. 2017): every true object is paired with the predicted object of
  highest IoU; AJI = sum of their intersections / (sum of their unions + area of predicted objects never
  paired).

Empty maps: when neither map has an object every metric is 1 (nothing to find, nothing found); when only
one has, every metric is 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def _relabel(labels: NDArray) -> tuple[NDArray, int]:
    """Map object ids to 1..n (background stays 0)."""
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids[0] != 0:
        inverse = inverse + 1
    return inverse.reshape(labels.shape), int(len(ids) - (ids[0] == 0))


def overlaps(pred: NDArray, target: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """Intersections (n_target x n_pred) and object areas of two instance maps of the same shape."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    p, n_p = _relabel(np.asarray(pred))
    t, n_t = _relabel(np.asarray(target))
    joint = np.bincount((t * (n_p + 1) + p).ravel(), minlength=(n_t + 1) * (n_p + 1)).reshape(n_t + 1, n_p + 1)
    return joint[1:, 1:], joint[1:, :].sum(1), joint[:, 1:].sum(0)


def _iou(pred: NDArray, target: NDArray) -> NDArray:
    inter, area_t, area_p = overlaps(pred, target)
    return inter / np.maximum(area_t[:, None] + area_p[None, :] - inter, 1)


def _empty(n_target: int, n_pred: int) -> float | None:
    if n_target == 0 and n_pred == 0:
        return 1.0
    if n_target == 0 or n_pred == 0:
        return 0.0
    return None


def instance_scores(pred: NDArray, target: NDArray, threshold: float = 0.5) -> dict[str, float]:
    """Detection F1 / precision / recall at ``threshold`` IoU, PQ, SQ, DQ and AJI of one image or volume.

    Args:
        pred: predicted instance map.
        target: true instance map, same shape.
        threshold: IoU above which two objects match (0.5 makes matches unique).

    Returns:
        ``f1``, ``precision``, ``recall``, ``pq``, ``sq``, ``dq``, ``aji``, ``objects`` (true), ``found``
        (predicted).
    """
    iou = _iou(pred, target)
    n_t, n_p = iou.shape
    matched = iou > threshold
    if threshold < 0.5:  # matches may then be ambiguous: keep each object's best match only
        matched &= (iou == iou.max(1, keepdims=True)) & (iou == iou.max(0, keepdims=True))
    tp = int(matched.sum())
    fp, fn = n_p - tp, n_t - tp
    empty = _empty(n_t, n_p)
    f1 = empty if empty is not None else 2 * tp / (2 * tp + fp + fn)
    sq = float(iou[matched].mean()) if tp else (empty if empty is not None else 0.0)
    return {
        "f1": f1,
        "precision": empty if empty is not None else tp / n_p,
        "recall": empty if empty is not None else tp / n_t,
        "pq": empty if empty is not None else float(iou[matched].sum()) / (tp + fp / 2 + fn / 2),
        "sq": sq,
        "dq": f1,
        "aji": aggregated_jaccard(pred, target),
        "objects": float(n_t),
        "found": float(n_p),
    }


def aggregated_jaccard(pred: NDArray, target: NDArray) -> float:
    """Aggregated Jaccard index (Kumar et al. 2017) of two instance maps."""
    inter, area_t, area_p = overlaps(pred, target)
    empty = _empty(len(area_t), len(area_p))
    if empty is not None:
        return empty
    union = area_t[:, None] + area_p[None, :] - inter
    best = (inter / np.maximum(union, 1)).argmax(1)  # each true object's predicted partner
    rows = np.arange(len(area_t))
    paired = inter[rows, best] > 0  # a true object overlapping nothing adds its area to the union only
    total_inter = float(inter[rows, best][paired].sum())
    total_union = float(union[rows, best][paired].sum() + area_t[~paired].sum())
    used = np.zeros(len(area_p), bool)
    used[best[paired]] = True
    return total_inter / (total_union + float(area_p[~used].sum()))
