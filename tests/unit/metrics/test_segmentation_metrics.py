import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from medlight.metrics.segmentation import METRICS, PerCaseMetrics, case_metrics, per_case_rows, summarise


def reference(pred: np.ndarray, gt: np.ndarray, c: int, spacing: list[float]) -> dict[str, float]:
    """Straightforward numpy/scipy definitions of the metrics, for one class."""
    p, g = pred == c, gt == c
    tp, fp, fn = (p & g).sum(), (p & ~g).sum(), (~p & g).sum()
    edge = lambda m: m & ~ndimage.binary_erosion(m)  # noqa: E731
    d_to_g = ndimage.distance_transform_edt(~edge(g), sampling=spacing)
    d_to_p = ndimage.distance_transform_edt(~edge(p), sampling=spacing)
    hd95 = max(np.percentile(d_to_g[edge(p)], 95), np.percentile(d_to_p[edge(g)], 95))
    return {
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
    assert v[:, 0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert v[:, 1].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    missed = case_metrics(torch.zeros_like(gt), gt, 3, [1.0, 2.0, 1.0])
    assert missed[0, 0] == 0 and missed[2, 0] == 0 and missed[3, 0] == 0
    spurious = case_metrics(gt, torch.zeros_like(gt), 3)
    assert spurious[2, 0] == 0 and spurious[3, 0] == 0  # structure absent but predicted
    assert missed[4, 0].item() == pytest.approx(math.sqrt(10**2 + 20**2 + 10**2))  # the volume diagonal, mm


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="must both be"):
        case_metrics(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5), 2)


def test_per_case_store_returns_cases_in_order_and_refuses_duplicates() -> None:
    store = PerCaseMetrics()
    store.update(torch.tensor([3]), torch.full((5, 2), 0.3))
    store.update(torch.tensor([1]), torch.full((5, 2), 0.1))
    index, values = store.compute()
    assert index.tolist() == [1, 3] and values[:, 0, 0].tolist() == pytest.approx([0.1, 0.3])
    store.update(torch.tensor([1]), torch.zeros(5, 2))
    with pytest.raises(RuntimeError, match="more than once"):
        store.compute()


def test_summary_and_rows() -> None:
    values = torch.tensor([[[0.8, 0.6]] * 5, [[1.0, float("nan")]] * 5])
    s = summarise(values, ["a", "b"], with_std=True)
    assert s["dice_a"] == pytest.approx(0.9) and s["dice_b"] == pytest.approx(0.6)
    assert s["dice"] == pytest.approx(0.75) and s["dice_a_std"] == pytest.approx(0.1)
    rows = per_case_rows(["x", "y"], values, ["a", "b"])
    assert rows[0]["case_id"] == "x" and rows[0]["hd95_b"] == pytest.approx(0.6)


def test_per_case_store_with_a_single_case() -> None:
    """One evaluation case: torchmetrics hands back a 0-d index; the store still returns one row."""
    store = PerCaseMetrics()
    store.update(torch.tensor([3]), torch.full((1, len(METRICS), 2), 0.5))
    index, values = store.gather()
    assert index.tolist() == [3] and values.shape == (1, len(METRICS), 2)
    assert summarise(values, ["a", "b"])["dice"] == 0.5
