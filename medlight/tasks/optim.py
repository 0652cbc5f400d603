"""Optimizer and learning-rate schedule defaults of the tasks (schedules that need the run's total steps)."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def default_optimizer(params: Any) -> Optimizer:
    """AdamW, lr 1e-3, weight decay 1e-5: every task's optimizer unless the config names one."""
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-5)


class PolyLR(LRScheduler):
    """Polynomial decay ``lr * (1 - step / total_steps) ** power`` (nnU-Net's schedule), stepped per batch.

    Args:
        optimizer: the optimizer.
        total_steps: steps over which lr decays to 0; None lets the task fill in the trainer's estimate.
        power: decay exponent.
    """

    def __init__(
        self, optimizer: Optimizer, total_steps: int | None = None, power: float = 0.9, last_epoch: int = -1
    ) -> None:
        self.total_steps = total_steps
        self.power = power
        super().__init__(optimizer, last_epoch)

    def set_total_steps(self, total_steps: int) -> None:
        """Fill in the total when the config left it open."""
        if self.total_steps is None:
            self.total_steps = int(total_steps)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        total = self.total_steps or 1
        factor = max(0.0, 1.0 - self.last_epoch / total) ** self.power if self.total_steps else 1.0
        return [float(base_lr) * factor for base_lr in self.base_lrs]
