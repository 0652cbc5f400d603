"""Losses and pseudo-label maths that MONAI and torchmetrics lack."""

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
    "ClassFrequencyEMA",
    "certainty_weights",
    "class_frequencies",
    "class_prototypes",
    "prototype_infonce",
    "rebalance_weights",
    "sigmoid_rampup",
    "softmax_mse",
    "topk_fuzzy_targets",
    "weighted_soft_cross_entropy",
]
