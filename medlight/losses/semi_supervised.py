"""Pseudo-label maths and loss terms of teacher-student semi-supervised segmentation.

FARCLUSS (Tarubinga et al. 2025) turns the teacher's softmax into *fuzzy* soft targets (its top-K classes,
renormalised), weights each voxel by the teacher's certainty (1 - normalised entropy), rebalances classes by
their smoothed inverse frequency in the pseudo-labels, and pulls projected features to class prototypes with
an InfoNCE loss. Mean Teacher (Tarvainen & Valpola 2017) uses the MSE between the two softmax outputs.

Every tensor is laid out as (B, C, *spatial): the functions work for 2D and 3D alike.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def topk_fuzzy_targets(probs: Tensor, k: int) -> Tensor:
    """Keep the ``k`` most probable classes of every voxel and renormalise them to sum to 1.

    ``k = 1`` gives one-hot (hard) pseudo-labels; ``k = C`` returns ``probs`` unchanged. Nothing is
    discarded by a confidence threshold: uncertain voxels keep a spread-out target.

    Args:
        probs: class probabilities (B, C, *spatial), summing to 1 over C.
        k: classes kept per voxel, 1 <= k.

    Returns:
        Soft targets of the same shape, zero outside each voxel's top-k classes.
    """
    if k < 1:
        raise ValueError(f"top-k needs k >= 1, got {k}")
    k = min(k, probs.shape[1])
    values, index = probs.topk(k, dim=1)
    kept = torch.zeros_like(probs).scatter_(1, index, values)
    return kept / kept.sum(dim=1, keepdim=True).clamp_min(torch.finfo(probs.dtype).tiny)


def certainty_weights(probs: Tensor) -> Tensor:
    """Per-voxel certainty ``1 - H(p) / log(C)``: 1 for a one-hot distribution, 0 for a uniform one.

    Args:
        probs: class probabilities (B, C, *spatial).

    Returns:
        Weights (B, *spatial) in [0, 1].
    """
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)
    return (1.0 - entropy / math.log(probs.shape[1])).clamp(0.0, 1.0)


def class_frequencies(targets: Tensor) -> Tensor:
    """Share of each class in (soft) targets (B, C, *spatial), averaged over voxels: shape (C,)."""
    return targets.transpose(0, 1).reshape(targets.shape[1], -1).mean(dim=1)


def rebalance_weights(frequencies: Tensor, power: float = 0.5, eps: float = 1e-3) -> Tensor:
    """Class weights proportional to ``(frequency + eps) ** -power``, scaled so that ``sum_c f_c w_c = 1``.

    The scaling keeps the expected loss of an average voxel unchanged: weights only shift emphasis from
    frequent to rare classes. ``power = 1`` is plain inverse frequency; smaller powers temper it.

    Args:
        frequencies: class frequencies (C,), summing to 1.
        power: exponent of the inverse frequency.
        eps: added to each frequency so an unseen class gets a large but finite weight.
    """
    raw = (frequencies + eps).pow(-power)
    return raw / (frequencies * raw).sum().clamp_min(1e-12)


class ClassFrequencyEMA(torch.nn.Module):
    """Class frequencies of the pseudo-labels, smoothed over steps by an exponential moving average.

    Kept as a buffer, so it is saved in checkpoints and resumed with the run. Starts uniform.

    Args:
        num_classes: number of classes C.
        momentum: weight of the old estimate at each update (0 uses only the current batch).
    """

    frequencies: Tensor

    def __init__(self, num_classes: int, momentum: float = 0.99) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.register_buffer("frequencies", torch.full((num_classes,), 1.0 / num_classes))

    @torch.no_grad()
    def update(self, targets: Tensor) -> Tensor:
        """Blend in the class frequencies of ``targets`` (B, C, *spatial); returns the new estimate."""
        self.frequencies.mul_(self.momentum).add_(class_frequencies(targets.float()), alpha=1.0 - self.momentum)
        return self.frequencies


def weighted_soft_cross_entropy(logits: Tensor, targets: Tensor, voxel_weights: Tensor | None = None) -> Tensor:
    """Mean over voxels of ``w * (-sum_c t_c log softmax(logits)_c)``.

    Dividing by the number of voxels (not by the sum of weights) lets uncertain batches contribute less.

    Args:
        logits: student logits (B, C, *spatial).
        targets: soft targets (B, C, *spatial).
        voxel_weights: (B, *spatial) weights; None weighs every voxel 1.
    """
    ce = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)
    if voxel_weights is not None:
        ce = ce * voxel_weights
    return ce.mean()


def softmax_mse(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Mean Teacher consistency: squared distance of the softmax vectors, summed over classes, mean over voxels."""
    diff = F.softmax(student_logits, dim=1) - F.softmax(teacher_logits, dim=1)
    return diff.pow(2).sum(dim=1).mean()


def class_prototypes(features: Tensor, labels: Tensor, mask: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Centroids of L2-normalised features per class, over masked voxels, renormalised to unit length.

    Args:
        features: (N, D) features, one row per voxel.
        labels: (N,) class of each voxel.
        mask: (N,) bool, voxels allowed to contribute (e.g. confident ones).
        num_classes: C.

    Returns:
        ``(prototypes, present)``: (C, D) unit prototypes (zero rows for absent classes) and (C,) bool.
    """
    feats = F.normalize(features[mask], dim=1)
    one_hot = F.one_hot(labels[mask].long(), num_classes).to(feats.dtype)  # (M, C)
    sums = one_hot.t() @ feats  # (C, D)
    present = one_hot.sum(dim=0) > 0
    return F.normalize(sums, dim=1), present


def prototype_infonce(
    features: Tensor, labels: Tensor, prototypes: Tensor, present: Tensor, temperature: float = 0.1
) -> Tensor:
    """InfoNCE of each feature against the class prototypes: its own class is the positive, others negatives.

    ``-log( exp(f.p_y / T) / sum_c exp(f.p_c / T) )`` over present classes, averaged over voxels whose class
    is present. Costs N x C similarities: no memory bank, no voxel-pair matrix.

    Args:
        features: (N, D) features (normalised here).
        labels: (N,) class of each feature.
        prototypes: (C, D) unit prototypes.
        present: (C,) which prototypes exist.
        temperature: softmax temperature T.

    Returns:
        Scalar loss; 0 (with a graph) when fewer than two classes are present or no voxel qualifies.
    """
    keep = present[labels.long()]
    if int(present.sum()) < 2 or not bool(keep.any()):
        return features.sum() * 0.0
    logits = F.normalize(features[keep], dim=1) @ prototypes.t() / temperature
    logits = logits.masked_fill(~present[None, :], float("-inf"))
    return F.cross_entropy(logits, labels[keep].long())


def sigmoid_rampup(step: int, length: int) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = step / length`` clipped to [0, 1] (Laine & Aila); 1 when length is 0."""
    if length <= 0:
        return 1.0
    t = min(max(step / length, 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))
