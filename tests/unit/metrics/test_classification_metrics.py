"""Slice and patient classification metrics on hand-made tensors."""

import math

import pytest
import torch

from medlight.metrics.classification import (
    SlicePredictions,
    auc,
    binary_rates,
    classification_metrics,
    diagnose,
    patient_probabilities,
)

PROBS = torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
LABELS = torch.tensor([0, 1, 1, 1])
PATIENTS = torch.tensor([0, 0, 1, 1])


def test_slice_metrics() -> None:
    out = classification_metrics(PROBS, LABELS)
    # predictions 0, 1, 0, 1: tp 2 of 3 positives, tn 1 of 1 negative
    assert out == pytest.approx({"accuracy": 0.75, "sensitivity": 2 / 3, "specificity": 1.0, "auc": 1.0})
    lowered = classification_metrics(PROBS, LABELS, threshold=0.3)  # 0.4 > 0.3: the third slice turns positive
    assert lowered == pytest.approx({"accuracy": 1.0, "sensitivity": 1.0, "specificity": 1.0, "auc": 1.0})


def test_auc_by_hand() -> None:
    # positives 0.4, 0.8; negatives 0.1, 0.6: pairs (0.4>0.1), (0.4<0.6), (0.8>0.1), (0.8>0.6) -> 3/4
    assert auc(torch.tensor([0.1, 0.4, 0.6, 0.8]), torch.tensor([0, 1, 0, 1])) == pytest.approx(0.75)
    assert auc(torch.tensor([0.2, 0.2]), torch.tensor([0, 1])) == pytest.approx(0.5)  # a tie counts half
    assert math.isnan(auc(torch.tensor([0.2, 0.7]), torch.tensor([1, 1])))


def test_undefined_rates_are_nan() -> None:
    out = binary_rates(torch.tensor([1, 1, 0]), torch.tensor([1, 1, 1]))
    assert out["accuracy"] == pytest.approx(2 / 3) and out["sensitivity"] == pytest.approx(2 / 3)
    assert math.isnan(out["specificity"])


def test_patient_mean_softmax() -> None:
    ids, mean = patient_probabilities(PROBS, PATIENTS)
    assert ids.tolist() == [0, 1]
    torch.testing.assert_close(mean, torch.tensor([[0.55, 0.45], [0.35, 0.65]]))
    assert diagnose(mean).tolist() == [0, 1]
    assert diagnose(mean, threshold=0.4).tolist() == [1, 1]  # 0.45 > 0.4
    unordered = torch.tensor([3, 1, 3, 1])  # any patient indices, in any order
    ids, mean = patient_probabilities(PROBS, unordered)
    assert ids.tolist() == [1, 3]
    torch.testing.assert_close(mean, torch.tensor([[0.2, 0.8], [0.7, 0.3]]))


def test_metrics_of_patient_means() -> None:
    mean = torch.tensor([[0.55, 0.45], [0.35, 0.65], [0.2, 0.8]])
    out = classification_metrics(mean, torch.tensor([0, 1, 0]))
    assert out == pytest.approx({"accuracy": 2 / 3, "sensitivity": 1.0, "specificity": 0.5, "auc": 0.5})
    only_positive = classification_metrics(mean, torch.tensor([1, 1, 1]))
    assert only_positive["sensitivity"] == pytest.approx(2 / 3) and math.isnan(only_positive["specificity"])


def test_slice_store_orders_by_patient_and_slice() -> None:
    store = SlicePredictions()
    store.update(PROBS[2:], LABELS[2:], torch.tensor([1, 0]), torch.tensor([5, 9]))
    store.update(PROBS[:2], LABELS[:2], torch.tensor([0, 1]), torch.tensor([3, 2]))
    out = store.compute()
    assert list(zip(out["patients"].tolist(), out["slices"].tolist())) == [(0, 3), (0, 9), (1, 2), (1, 5)]
    torch.testing.assert_close(out["probs"], torch.tensor([[0.8, 0.2], [0.1, 0.9], [0.3, 0.7], [0.6, 0.4]]))


def test_youden_threshold_separates_shifted_scores_and_is_nan_with_one_class() -> None:
    from medlight.metrics.classification import diagnose, youden_threshold

    score = torch.tensor([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4])  # all below 0.5: argmax says "negative"
    target = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    t = youden_threshold(score, target)
    assert 0.2 <= t < 0.25
    probs = torch.stack([1 - score, score], 1)
    assert diagnose(probs, 1, t).tolist() == target.tolist()
    assert math.isnan(youden_threshold(score, torch.ones(8, dtype=torch.long)))
