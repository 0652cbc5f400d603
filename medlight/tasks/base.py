"""What every medlight task shares: optimizer/scheduler from config, a non-finite loss guard, output paths."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torch import Tensor

from medlight.contracts import require
from medlight.errors import ConfigError, NonFiniteError
from medlight.runs.dashboard import log_image, log_table, shows_images
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
        val_overlays: validation cases drawn (image, reference, prediction) at each validation for dashboards
            that show images (wandb, TensorBoard); 0: none.
        nonfinite_check_every: how often the guard reads the loss's finiteness on the host. 1: every step, exactly
            as above (free on CPU). N > 1: each step's check stays on the device and is read every N steps
            (default on GPU: ``log_every_n_steps``, when the loggers read the loss anyway), so no step waits for the
            device; a non-finite loss inside a window was already applied: training goes on if the weights are still
            finite (e.g. 16-mixed's gradient scaler skipped that step), and stops otherwise (last checkpoint intact).
            None: 1 on CPU, ``log_every_n_steps`` on other devices.
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
        val_overlays: int = 2,
        nonfinite_check_every: int | None = None,
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.nonfinite_loss = nonfinite_loss
        self.max_nonfinite_steps = max_nonfinite_steps
        self.nonfinite_check_every = nonfinite_check_every
        self._nonfinite_window: Tensor | None = None  # non-finite losses since the last read (on the device)
        self._nonfinite_streak = 0
        self._skip_update = False
        self._summaries: dict[str, dict[str, Any]] = {}
        self.val_overlays = val_overlays
        self._overlays: list[dict[str, Any]] = []

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
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)  # type: ignore[attr-defined]
        if hasattr(scheduler, "set_time_share") and timer is not None and timer.time_remaining() is not None:
            scheduler.set_time_share(lambda: _time_share(timer))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def datamodule_as(self, contract: type, example: str) -> Any:
        """The trainer's data module, checked against ``contract`` (a Protocol of :mod:`medlight.contracts`)."""
        return require(getattr(self.trainer, "datamodule", None), contract, type(self).__name__, example)

    # -- set-up ------------------------------------------------------------------------------------------
    def probe_network(self, in_channels: int, patch_size: tuple[int, ...], what: str) -> tuple[Tensor, Tensor]:
        """Run the network once on a zero patch of the data's shape: (input, output), or a ConfigError that
        says why the network cannot take ``what`` (e.g. "a 1-channel 3D patch of size (32, 48, 32)")."""
        x = torch.zeros(1, in_channels, *patch_size, device=self.device)
        net: Any = self.net
        try:
            with torch.no_grad():
                y = net.eval()(x)
        except RuntimeError as err:
            raise ConfigError(f"the network cannot take {what} from this data: {err}") from err
        finally:
            net.train()
        return x, y

    # -- non-finite loss guard -------------------------------------------------------------------------
    def guard_loss(self, loss: Tensor) -> Tensor:
        """Return ``loss``, or, if it is NaN/Inf on any process, a zero loss whose step changes nothing.

        The zero loss still runs backward (so DDP processes stay in step); ``on_after_backward`` then
        drops every gradient, and optimizers leave parameters without gradient untouched. With
        ``nonfinite_check_every`` > 1 (the GPU default) the check is read only every N steps: see the class doc.
        """
        every = self.nonfinite_check_every
        if every is None:  # read when the loggers read the loss anyway (log_every_n_steps); on CPU reading is free
            every = 1 if loss.device.type == "cpu" else int(getattr(self.trainer, "log_every_n_steps", 50))
        return self._guard_lazily(loss, every) if every > 1 else self._guard_now(loss)

    def _guard_now(self, loss: Tensor) -> Tensor:
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

    def _guard_lazily(self, loss: Tensor, every: int) -> Tensor:
        bad = (~torch.isfinite(loss.detach())).any().to(torch.int32)
        window = bad if self._nonfinite_window is None else self._nonfinite_window + bad
        if (self.global_step + 1) % every:
            self._nonfinite_window = window  # stays on the device: this step does not wait for it
            return loss
        self._nonfinite_window = None
        earlier = window - bad  # the window's steps before this one: their updates are applied already
        if self.trainer.world_size > 1:
            earlier = self.trainer.strategy.reduce(earlier.float(), reduce_op="sum")
        if seen := int(earlier):  # the one host read of the window
            where = f"in the {every - 1} steps before step {self.global_step} (epoch {self.current_epoch})"
            finite = all(bool(torch.isfinite(p).all()) for p in self.parameters() if p.is_floating_point())
            if self.nonfinite_loss == "stop" or not finite:
                state = "the weights are finite" if finite else "the weights hold NaN/Inf"
                raise NonFiniteError(
                    f"{seen} non-finite loss(es) {where}; {state}; training stopped. The last checkpoint is "
                    "intact; nonfinite_check_every=1 checks (and skips) every step"
                )
            rank_zero_warn(f"{seen} non-finite loss(es) {where}; the weights are still finite, training goes on")
        return self._guard_now(loss)  # this step is read anyway: skipped or stopped exactly

    def on_after_backward(self) -> None:
        if self._skip_update:
            for p in self.parameters():
                p.grad = None
            self._skip_update = False

    def log_train(self, loss: Tensor, batch_size: int, extra: dict[str, Any] | None = None) -> None:
        """Log ``train/loss`` (on the progress bar) and ``extra`` per-step values, on the steps that read them.

        Loggers write every ``log_every_n_steps`` steps and drop what is logged in between, and only a progress
        bar shows every step; each ``self.log`` costs Lightning about 0.5 ms of bookkeeping (about 1% of a small
        CPU step, see experiments/perf/overhead.py), so without a progress bar the steps between go unlogged.
        """
        trainer = self.trainer
        if trainer.progress_bar_callback is None and not trainer._logger_connector.should_update_logs:
            return
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        if extra:
            self.log_dict(extra, batch_size=batch_size)

    # -- dashboards -----------------------------------------------------------------------------------
    def keeps_overlay(self, batch_idx: int) -> bool:
        """Whether this validation batch is one drawn for the dashboards (rank 0, a few, only when shown)."""
        return (
            batch_idx < self.val_overlays
            and self.global_rank == 0
            and not self.trainer.sanity_checking
            and shows_images(self.loggers)
        )

    def keep_overlay(self, row: dict[str, Any]) -> None:
        """Keep one drawn case (2D tensors on the CPU and a ``title``) until :meth:`log_overlays`."""
        self._overlays.append(row)

    def log_overlays(self, key: str, draw: Callable[[list[dict[str, Any]]], np.ndarray]) -> None:
        """Draw the kept cases into one image and log it to every logger that shows images."""
        rows, self._overlays = self._overlays, []
        if rows:
            log_image(self.loggers, key, draw(rows), self.global_step)

    def log_per_case(self, stage: str, rows: list[dict[str, Any]]) -> None:
        """The per-case table as a dashboard table (wandb Table, TensorBoard text)."""
        log_table(self.loggers, f"{stage}/per_case", rows, self.global_step)

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


def _time_share(timer: Timer) -> float:
    elapsed, remaining = timer.time_elapsed(), timer.time_remaining()
    return elapsed / max(elapsed + (remaining or 0.0), 1e-9)
