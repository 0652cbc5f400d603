"""Loss of the instance-segmentation task: foreground, boundary and centre-ness maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import Tensor, nn


class CentreBoundaryLoss(nn.Module):
    """Loss of (B, 3, *spatial) logits against :func:`instance_targets` maps.

    Foreground: Dice + binary cross-entropy; boundary and centre-ness: binary cross-entropy (centre-ness
    is a soft target in [0, 1], which cross-entropy fits as well as a hard one), each weighted.

    Args:
        boundary_weight: weight of the boundary term.
        centre_weight: weight of the centre-ness term.
    """

    def __init__(self, boundary_weight: float = 1.0, centre_weight: float = 1.0) -> None:
        super().__init__()
        self.weights = (1.0, boundary_weight, centre_weight)
        self.dice = DiceLoss(sigmoid=True)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if logits.shape != targets.shape or logits.shape[1] != 3:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)}: need (B, 3, ...) both")
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        per_map = bce.transpose(0, 1).flatten(1).mean(1)  # one mean per output map
        weights = torch.tensor(self.weights, dtype=per_map.dtype, device=per_map.device)
        return (weights * per_map).sum() + self.dice(logits[:, :1], targets[:, :1])
