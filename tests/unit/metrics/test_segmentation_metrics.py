import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from medlight.metrics.segmentation import (
    COUNTS,
    METRICS,
    PerCaseMetrics,
    case_counts,
    case_metrics,
    per_case_rows,
    summarise,
)


def reference(pred: np.ndarray, gt: np.ndarray, c: int, spacing: list[float], tol: float = 1.0) -> dict[str, float]:
    """Straightforward numpy/scipy definitions of the metrics, for one class."""
    p, g = pred == c, gt == c
    tp, fp, fn = (p & g).sum(), (p & ~g).sum(), (~p & g).sum()
    edge = lambda m: m & ~ndimage.binary_erosion(m)  # noqa: E731
    d_to_g = ndimage.distance_transform_edt(~edge(g), sampling=spacing)
    d_to_p = ndimage.distance_transform_edt(~edge(p), sampling=spacing)
    hd95 = max(np.percentile(d_to_g[edge(p)], 95), np.percentile(d_to_p[edge(g)], 95))
    close = (d_to_g[edge(p)] <= tol).sum() + (d_to_p[edge(g)] <= tol).sum()
    return {
        "nsd": close / (edge(p).sum() + edge(g).sum()),
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "hd95": hd95,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("spacing", [[1.0, 1.0, 1.0], [0.8, 1.0, 2.5]])
def test_metrics_match_the_reference(seed, spacing) -> None:
    rng = np.random.default_rng(seed)
    gt = np.zeros((24, 20, 16), np.int64)
    gt[4:14, 5:15, 3:12] = 1
    gt[15:22, 2:9, 6:14] = 2
    pred = gt.copy()
    noise = rng.random(gt.shape)
    pred[noise < 0.08] = 0
    pred[(noise > 0.97)] = 1
    pred = np.roll(pred, shift=1, axis=int(seed % 3))
    values = case_metrics(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None], 3, spacing)
    assert values.shape == (len(METRICS), 2)
    for c in (1, 2):
        ref = reference(pred, gt, c, spacing)
        for m, metric in enumerate(METRICS):
            assert values[m, c - 1].item() == pytest.approx(ref[metric], rel=1e-4, abs=1e-4), metric


def test_empty_structure_conventions() -> None:
    gt = torch.zeros(1, 10, 10, 10, dtype=torch.long)
    pred = torch.zeros_like(gt)
    gt[0, 2:5, 2:5, 2:5] = 1
    pred[0, 2:5, 2:5, 2:5] = 1  # class 1 right, class 2 absent from both
    v = case_metrics(pred, gt, 3)
    assert v[:, 0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    assert v[:, 1].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    missed = case_metrics(torch.zeros_like(gt), gt, 3, [1.0, 2.0, 1.0])
    assert missed[0, 0] == 0 and missed[2, 0] == 0 and missed[3, 0] == 0
    spurious = case_metrics(gt, torch.zeros_like(gt), 3)
    assert spurious[2, 0] == 0 and spurious[3, 0] == 0  # structure absent but predicted
    assert missed[4, 0].item() == pytest.approx(math.sqrt(10**2 + 20**2 + 10**2))  # the volume diagonal, mm
    assert missed[5, 0] == 0 and spurious[5, 0] == 0


def test_nsd_tolerance_per_class_in_mm() -> None:
    """A box shifted by 2 voxels of 1.5 mm (3 mm): no boundary voxel within 1 mm on the moved faces, every one
    within 3.5 mm; tolerances are per class."""
    gt = np.zeros((20, 20, 20), np.int64)
    gt[5:12, 5:12, 5:12] = 1
    pred = np.roll(gt, 2, axis=0)
    t = lambda a: torch.from_numpy(a)[None]  # noqa: E731
    tight, loose = (case_metrics(t(pred), t(gt), 2, [1.5, 1.5, 1.5], tol)[5, 0].item() for tol in (1.0, 3.5))
    assert tight == pytest.approx(reference(pred, gt, 1, [1.5] * 3, 1.0)["nsd"]) and tight < 1
    assert loose == 1.0
    with pytest.raises(ValueError, match="nsd_tolerance"):
        case_metrics(t(pred), t(gt), 2, None, [1.0, 2.0])


def test_counts_like_nnunet_summary() -> None:
    gt = torch.zeros(1, 6, 6, dtype=torch.long)
    pred = torch.zeros_like(gt)
    gt[0, :2, :3] = 1  # 6 reference voxels of class 1
    pred[0, :1, :4] = 1  # 4 predicted, 3 of them right
    pred[0, 5, 5] = 2  # class 2 predicted where it is absent
    counts = case_counts(pred, gt, 3)
    assert COUNTS == ("tp", "fp", "fn", "tn", "n_ref", "n_pred")
    assert counts[:, 0].tolist() == [3, 1, 3, 29, 6, 4] and counts[:, 1].tolist() == [0, 1, 0, 35, 0, 1]
    rows = per_case_rows(["a"], counts[None], ["x", "y"], COUNTS)
    assert rows == [
        {
            "case_id": "a",
            "tp_x": 3,
            "tp_y": 0,
            "fp_x": 1,
            "fp_y": 1,
            "fn_x": 3,
            "fn_y": 0,
            "tn_x": 29,
            "tn_y": 35,
            "n_ref_x": 6,
            "n_ref_y": 0,
            "n_pred_x": 4,
            "n_pred_y": 1,
        }
    ]


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="must both be"):
        case_metrics(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5), 2)


def test_per_case_store_returns_cases_in_order_and_refuses_duplicates() -> None:
    store = PerCaseMetrics()
    store.update(torch.tensor([3]), torch.full((len(METRICS), 2), 0.3))
    store.update(torch.tensor([1]), torch.full((len(METRICS), 2), 0.1))
    index, values = store.compute()
    assert index.tolist() == [1, 3] and values[:, 0, 0].tolist() == pytest.approx([0.1, 0.3])
    store.update(torch.tensor([1]), torch.zeros(len(METRICS), 2))
    with pytest.raises(RuntimeError, match="more than once"):
        store.compute()


def test_summary_and_rows() -> None:
    values = torch.tensor([[[0.8, 0.6]] * len(METRICS), [[1.0, float("nan")]] * len(METRICS)])
    s = summarise(values, ["a", "b"], with_std=True)
    assert s["dice_a"] == pytest.approx(0.9) and s["dice_b"] == pytest.approx(0.6)
    assert s["dice"] == pytest.approx(0.75)
    assert s["dice_a_std"] == pytest.approx(0.02**0.5)  # sample std (ddof 1), as the reports' std over runs
    assert math.isnan(s["dice_b_std"])  # one case: no spread measured, not 0
    rows = per_case_rows(["x", "y"], values, ["a", "b"])
    assert rows[0]["case_id"] == "x" and rows[0]["hd95_b"] == pytest.approx(0.6)


def test_per_case_store_with_a_single_case() -> None:
    """One evaluation case: torchmetrics hands back a 0-d index; the store still returns one row."""
    store = PerCaseMetrics()
    store.update(torch.tensor([3]), torch.full((1, len(METRICS), 2), 0.5))
    index, values = store.gather()
    assert index.tolist() == [3] and values.shape == (1, len(METRICS), 2)
    assert summarise(values, ["a", "b"])["dice"] == 0.5
