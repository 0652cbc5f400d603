"""Attention Branch Network losses, with the attention map supervised by an organ mask.

* conventional: ``L = L_att + L_per + gamma * L_map``
* dynamic: ``L = alpha * gamma * L_map + (1 - alpha) * (L_att + L_per)``, alpha following a schedule
  over training (by default 0.9 for the first half of the epochs, 0.1 for the second half).

``L_att`` and ``L_per`` are the cross-entropies of the attention and perception branches, ``L_map`` the
mean squared error between M(x) and the organ mask resized (area-averaged) to M's size. Without masks
the map term is off, whatever the schedule, and the loss is plain ABN's ``L_att + L_per``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AttentionLossSchedule:
    """How the attention-map term is weighted.

    Args:
        mode: ``conventional`` (fixed weights) or ``dynamic`` (alpha schedule).
        gamma: weight of the map term.
        alpha_start: alpha before the switch (dynamic).
        alpha_end: alpha after the switch (dynamic).
        switch_at: fraction of training (0..1) at which alpha switches.
        ramp: fraction of training over which alpha moves linearly from start to end, centred on
            ``switch_at``; 0 is the study's hard switch.
    """

    mode: Literal["conventional", "dynamic"] = "conventional"
    gamma: float = 1.0
    alpha_start: float = 0.9
    alpha_end: float = 0.1
    switch_at: float = 0.5
    ramp: float = 0.0

    def alpha(self, progress: float) -> float | None:
        """Alpha at ``progress`` (the fraction of training done, e.g. epoch / max_epochs); None if conventional."""
        if self.mode == "conventional":
            return None
        if self.ramp <= 0:
            return self.alpha_start if progress < self.switch_at else self.alpha_end
        t = min(1.0, max(0.0, (progress - (self.switch_at - self.ramp / 2)) / self.ramp))
        return self.alpha_start + t * (self.alpha_end - self.alpha_start)


def map_loss(att_map: Tensor, mask: Tensor, has_mask: Tensor | None = None) -> Tensor:
    """Mean squared error between M(x) (B, 1, h, w) and the mask (B, 1, H, W) area-resized to (h, w).

    Samples whose ``has_mask`` is False are left out; the mean is over the remaining samples' pixels
    (0 if none has a mask).
    """
    target = F.interpolate(mask.float(), size=att_map.shape[-2:], mode="area")
    per_sample = ((att_map - target) ** 2).flatten(1).mean(1)
    if has_mask is None:
        return per_sample.mean()
    keep = has_mask.bool()
    return per_sample[keep].mean() if keep.any() else att_map.sum() * 0.0


def abn_loss(
    attention_logits: Tensor,
    perception_logits: Tensor,
    att_map: Tensor,
    target: Tensor,
    schedule: AttentionLossSchedule,
    alpha: float | None = None,
    mask: Tensor | None = None,
    has_mask: Tensor | None = None,
) -> dict[str, Tensor]:
    """The ABN loss and its terms.

    Args:
        attention_logits: (B, classes) from the attention branch.
        perception_logits: (B, classes) from the perception branch.
        att_map: M(x), (B, 1, h, w).
        target: class indices, (B,).
        schedule: the weighting.
        alpha: the current alpha (dynamic schedule); ignored when conventional.
        mask: organ masks (B, 1, H, W) or None.
        has_mask: (B,) which samples have a mask (None: all, when ``mask`` is given).

    Returns:
        ``loss``, ``att`` (L_att), ``per`` (L_per) and ``map`` (L_map, 0 without masks).
    """
    l_att = F.cross_entropy(attention_logits, target)
    l_per = F.cross_entropy(perception_logits, target)
    with_map = mask is not None and (has_mask is None or bool(has_mask.any()))
    l_map = map_loss(att_map, mask, has_mask) if with_map else torch.zeros((), device=att_map.device)  # type: ignore[arg-type]
    if not with_map:
        loss = l_att + l_per
    elif schedule.mode == "conventional":
        loss = l_att + l_per + schedule.gamma * l_map
    else:
        if alpha is None:
            raise ValueError("the dynamic schedule needs the current alpha")
        loss = alpha * schedule.gamma * l_map + (1 - alpha) * (l_att + l_per)
    return {"loss": loss, "att": l_att, "per": l_per, "map": l_map}
