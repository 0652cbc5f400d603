"""Losses and pseudo-label maths that MONAI and torch lack, and thin compositions of theirs."""

from medlight.losses.abn import AttentionLossSchedule, abn_loss, map_loss
from medlight.losses.reconstruction import MSSSIML1Loss
from medlight.losses.semi_supervised import (
    ClassFrequencyEMA,
    certainty_weights,
    class_frequencies,
    class_prototypes,
    prototype_infonce,
    rebalance_weights,
    sigmoid_rampup,
    softmax_mse,
    topk_fuzzy_targets,
    weighted_soft_cross_entropy,
)

__all__ = [
    "AttentionLossSchedule",
    "ClassFrequencyEMA",
    "MSSSIML1Loss",
    "abn_loss",
    "certainty_weights",
    "class_frequencies",
    "class_prototypes",
    "map_loss",
    "prototype_infonce",
    "rebalance_weights",
    "sigmoid_rampup",
    "softmax_mse",
    "topk_fuzzy_targets",
    "weighted_soft_cross_entropy",
]
