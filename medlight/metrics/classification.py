"""Slice- and patient-level classification metrics, and a torchmetrics store of slice predictions.

One class (``positive``) is the condition to detect; sensitivity and specificity are one-vs-rest for it.
A metric that is undefined on the given data (no positive, or no negative, case) is NaN, never 0 or 1:
a patient-level specificity over patients who all have the condition does not exist.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc, binary_roc


def binary_rates(prediction: Tensor, target: Tensor) -> dict[str, float]:
    """Accuracy, sensitivity and specificity of 0/1 predictions against 0/1 targets (NaN where undefined)."""
    prediction, target = prediction.long().flatten(), target.long().flatten()
    tp = int(((prediction == 1) & (target == 1)).sum())
    tn = int(((prediction == 0) & (target == 0)).sum())
    pos, neg = int((target == 1).sum()), int((target == 0).sum())
    return {
        "accuracy": (tp + tn) / (pos + neg) if pos + neg else math.nan,
        "sensitivity": tp / pos if pos else math.nan,
        "specificity": tn / neg if neg else math.nan,
    }


def auc(score: Tensor, target: Tensor) -> float:
    """Area under the ROC curve of scores for 0/1 targets (NaN when only one class is present)."""
    target = target.long().flatten()
    if target.numel() == 0 or bool((target == target[0]).all()):
        return math.nan
    return float(binary_auroc(score.float().flatten(), target))


def youden_threshold(score: Tensor, target: Tensor) -> float:
    """The threshold maximising Youden's J (sensitivity + specificity - 1) for 0/1 targets: a score above it
    is positive. NaN when only one class is present."""
    target = target.long().flatten()
    if target.numel() == 0 or bool((target == target[0]).all()):
        return math.nan
    fpr, tpr, thresholds = binary_roc(score.float().flatten(), target)
    best = int(torch.argmax(tpr - fpr))
    return float(thresholds[best]) - 1e-7  # binary_roc counts score >= threshold as positive; diagnosis uses >


def classification_metrics(
    probs: Tensor, labels: Tensor, positive: int = 1, threshold: float | None = None
) -> dict[str, float]:
    """Accuracy, sensitivity, specificity and AUC for the positive class, of slices or of patients' mean
    probabilities alike; decisions by :func:`diagnose` (argmax, or ``positive`` above ``threshold``).

    Args:
        probs: (N, classes) class probabilities.
        labels: (N,) class indices.
        positive: the class to detect.
        threshold: decision threshold on the positive class's probability; None: argmax.
    """
    decision = diagnose(probs, positive, threshold)
    out = binary_rates(decision == positive, labels == positive)
    out["accuracy"] = float((decision == labels).float().mean()) if len(labels) else math.nan
    out["auc"] = auc(probs[:, positive], labels == positive)
    return out


def patient_probabilities(probs: Tensor, patient: Tensor) -> tuple[Tensor, Tensor]:
    """Mean softmax over each patient's slices.

    Args:
        probs: (N, classes) slice probabilities.
        patient: (N,) patient index of each slice.

    Returns:
        The sorted unique patient indices (P,) and their mean probabilities (P, classes).
    """
    patients, inverse = torch.unique(patient, sorted=True, return_inverse=True)
    sums = torch.zeros(len(patients), probs.shape[1], dtype=probs.dtype).index_add_(0, inverse, probs)
    counts = torch.bincount(inverse, minlength=len(patients)).to(probs.dtype)
    return patients, sums / counts[:, None]


def diagnose(probs: Tensor, positive: int = 1, threshold: float | None = None) -> Tensor:
    """Classes from probabilities: argmax, or ``positive`` where its probability > threshold (else the most
    probable other class)."""
    if threshold is None:
        return probs.argmax(1)
    rest = probs.clone()
    rest[:, positive] = -1.0
    return torch.where(probs[:, positive] > threshold, positive, rest.argmax(1))


class SlicePredictions(Metric):
    """Collects slice probabilities, labels, patient and slice indices; under DDP, from every process."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("probs", "labels", "patients", "slices"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, probs: Tensor, labels: Tensor, patients: Tensor, slices: Tensor) -> None:
        values = {"probs": probs.detach().float(), "labels": labels, "patients": patients, "slices": slices}
        for name, value in values.items():
            getattr(self, name).append(value if name == "probs" else value.long())

    def compute(self) -> dict[str, Tensor]:
        def cat(x: list[Tensor] | Tensor) -> Tensor:
            if isinstance(x, list):
                return torch.cat(x) if x else torch.zeros(0)
            return x

        states = {n: cat(getattr(self, n)) for n in ("probs", "labels", "patients", "slices")}
        order = torch.argsort(states["patients"] * (1 << 20) + states["slices"])  # a fixed order for the tables
        return {n: v[order].cpu() for n, v in states.items()}
