"""What every medlight task shares: optimizer/scheduler from config, a non-finite loss guard, output paths."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torch import Tensor

from medlight.errors import NonFiniteError
from medlight.runs.layout import RunLayout, SummaryContributor
from medlight.tasks.optim import default_optimizer

log = logging.getLogger(__name__)


class MedlightTask(LightningModule):
    """Base LightningModule.

    Args:
        optimizer: optimizer factory (``class_path``/``init_args`` in config).
        scheduler: learning-rate scheduler factory; a scheduler with ``set_total_steps`` (e.g.
            :class:`medlight.tasks.PolyLR`) gets the trainer's estimated number of optimizer steps.
        scheduler_interval: step the scheduler every ``step`` or every ``epoch``.
        nonfinite_loss: on a NaN/Inf loss, ``skip`` the step (no weight update) or ``stop`` training.
        max_nonfinite_steps: stop anyway after this many consecutive skipped steps.
    """

    checkpoint_monitor: tuple[str, str] | None = None  # (metric, min/max) that selects best.ckpt; None: final weights
    # True where a training step may leave trainable parameters without gradient (e.g. adapters of centers absent
    # from a batch): ``--trainer.strategy ddp`` then becomes ``ddp_find_unused_parameters_true`` (see the CLI)
    ddp_find_unused_parameters: bool = False

    def __init__(
        self,
        optimizer: OptimizerCallable = default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["step", "epoch"] = "step",
        nonfinite_loss: Literal["skip", "stop"] = "skip",
        max_nonfinite_steps: int = 10,
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.nonfinite_loss = nonfinite_loss
        self.max_nonfinite_steps = max_nonfinite_steps
        self._nonfinite_streak = 0
        self._skip_update = False
        self._summaries: dict[str, dict[str, Any]] = {}

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]  # frozen parts (a teacher, a backbone) stay out
        if not params:  # e.g. the zero-filled baseline: nothing to train
            return None
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        if hasattr(scheduler, "set_total_steps"):
            scheduler.set_total_steps(int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    # -- non-finite loss guard -------------------------------------------------------------------------
    def guard_loss(self, loss: Tensor) -> Tensor:
        """Return ``loss``, or, if it is NaN/Inf on any process, a zero loss whose step changes nothing.

        The zero loss still runs backward (so DDP processes stay in step); ``on_after_backward`` then
        drops every gradient, and optimizers leave parameters without gradient untouched.
        """
        finite = bool(torch.isfinite(loss.detach()).all())
        if self.trainer.world_size > 1:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            self._nonfinite_streak = 0
            return loss
        self._nonfinite_streak += 1
        where = f"at step {self.global_step} (epoch {self.current_epoch})"
        if self.nonfinite_loss == "stop":
            raise NonFiniteError(
                f"non-finite loss {where}; training stopped (nonfinite_loss=stop). The last checkpoint is intact."
            )
        if self._nonfinite_streak > self.max_nonfinite_steps:
            raise NonFiniteError(
                f"{self._nonfinite_streak} consecutive non-finite losses {where}; training "
                "stopped. Lower the learning rate or check the data. The last checkpoint is intact."
            )
        rank_zero_warn(f"non-finite loss {where}: step skipped, weights unchanged")
        self._skip_update = True
        return sum((p * 0.0).sum() for p in self.parameters() if p.requires_grad)  # type: ignore[return-value]

    def on_after_backward(self) -> None:
        if self._skip_update:
            for p in self.parameters():
                p.grad = None
            self._skip_update = False

    # -- outputs -------------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """The run folder (the trainer's ``default_root_dir``), where tables and predictions go."""
        return Path(self.trainer.default_root_dir)

    @property
    def layout(self) -> RunLayout:
        """The paths of the run folder."""
        return RunLayout(self.run_dir)

    def set_summary(self, stage: str, summary: dict[str, Any]) -> None:
        """The stage's summary (means, set-level metrics, ``cases``), written once when the stage ends."""
        self._summaries[stage] = dict(summary)

    def on_test_end(self) -> None:
        self._write_summary("test")

    @rank_zero_only
    def _write_summary(self, stage: str) -> None:
        """Write ``metrics/<stage>_summary.json`` with what callbacks add to it (e.g. timing), atomically."""
        summary = self._summaries.pop(stage, None)
        if summary is None:
            return
        for callback in self.trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, SummaryContributor):
                summary.update(callback.summary_items(stage, self))
        self.layout.write_summary(stage, summary)
