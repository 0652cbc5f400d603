"""One plain log line every ``log_every_n_steps`` optimizer steps, for runs without a progress bar.

A progress bar in a SLURM log is one line rewritten with carriage returns thousands of times; with
``--trainer.enable_progress_bar false`` the CLI adds this callback instead, so ``slurm-*.out`` reads e.g.
``step 200/2000 (epoch 3): train/loss 0.4127, 0.21 s/step``.
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only


class ProgressLog(Callback):
    """Print step, epoch, the logged training values and seconds per step every N steps (rank 0 only).

    Args:
        every_n_steps: None: the trainer's ``log_every_n_steps``.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        self.every_n_steps = every_n_steps
        self._last = (0, 0.0)  # (step, time) of the previous line

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last = (trainer.global_step, time.perf_counter())

    @rank_zero_only
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        every = self.every_n_steps or int(getattr(trainer, "log_every_n_steps", 50))
        step = trainer.global_step
        if every <= 0 or step % every or step == self._last[0]:
            return
        now = time.perf_counter()
        per_step = (now - self._last[1]) / (step - self._last[0])
        self._last = (step, now)
        # read only every N steps: at most one device sync per line, none in the steps between
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/") and v.numel() == 1}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(values.items()))
        total = f"/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else ""
        print(f"step {step}{total} (epoch {trainer.current_epoch}): {shown}, {per_step:.3g} s/step", flush=True)
