"""Optimizer and learning-rate schedule defaults of the tasks (schedules that need the run's total steps)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def default_optimizer(params: Any) -> Optimizer:
    """AdamW, lr 1e-3, weight decay 1e-5: every task's optimizer unless the config names one."""
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-5)


class PolyLR(LRScheduler):
    """Polynomial decay ``lr * (1 - progress) ** power`` (nnU-Net's schedule), stepped per batch.

    ``progress`` is ``step / total_steps``; with ``follow_max_time`` it is the larger of that and the share of the
    trainer's ``max_time`` spent, so a run capped by wall-clock time (a planned fit whose steps ran slower than
    timed) still ends its decay when the time is up instead of stopping at a high learning rate. That share is
    read from Lightning's Timer, which a resumed run restores; it makes the schedule depend on the machine's speed.

    Args:
        optimizer: the optimizer.
        total_steps: steps over which lr decays to 0; None lets the task fill in the trainer's estimate.
        power: decay exponent.
        follow_max_time: decay by whichever of steps and ``trainer.max_time`` runs out first.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int | None = None,
        power: float = 0.9,
        follow_max_time: bool = False,
        last_epoch: int = -1,
    ) -> None:
        self.total_steps = total_steps
        self.power = power
        self.follow_max_time = follow_max_time
        self._time_share: Callable[[], float] | None = None
        super().__init__(optimizer, last_epoch)

    def set_total_steps(self, total_steps: int) -> None:
        """Fill in the total when the config left it open."""
        if self.total_steps is None:
            self.total_steps = int(total_steps)

    def set_time_share(self, time_share: Callable[[], float]) -> None:
        """The share (0 to 1) of the wall-clock budget spent; used only with ``follow_max_time``."""
        if self.follow_max_time:
            self._time_share = time_share

    def progress(self) -> float:
        steps = self.last_epoch / self.total_steps if self.total_steps else 0.0
        spent = self._time_share() if self._time_share is not None else 0.0
        return min(1.0, max(steps, spent))

    def get_lr(self) -> list[float]:  # type: ignore[override]
        factor = (1.0 - self.progress()) ** self.power
        return [float(base_lr) * factor for base_lr in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k != "_time_share"}  # a closure: not saved
