"""Cost of a run: parameters, training seconds per epoch and inference seconds per test case.

Stack ``configs/callbacks/timing.yaml`` to add it. At the end of ``test`` the numbers go into
``<run_dir>/metrics/timing.json`` and into the task's ``metrics/test_summary.json`` (the callback is a
:class:`medlight.runs.layout.SummaryContributor`), so the study report lists them next to the scores:

* ``params``: trainable parameters of the network;
* ``train_seconds_per_epoch``: wall time of a training epoch without the validation run inside it, mean
  over complete epochs (all epochs when none is complete, e.g. a run limited by ``max_steps``);
* ``train_seconds_per_step``: the same time per optimizer batch;
* ``inference_seconds_per_case``: time spent in the network's forward passes per test case (the sliding
  window's windows, mirrored copies included): the network's share;
* ``test_seconds_per_case``: the whole test step per case (inference plus resampling to the source
  geometry, metrics and writing the prediction).

Times are wall-clock seconds of this process (rank 0 under DDP); training times survive a resume through
the checkpoint. On CUDA every reading first waits for the device (``torch.cuda.synchronize``): kernels run
asynchronously, and without it a forward pass would seem to take only the time of queueing its kernels.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from torch.utils.hooks import RemovableHandle

from medlight.runs.layout import RunLayout, write_json


class RunTiming(Callback):
    """Measure parameters, training time per epoch and inference time per test case (see module doc)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []  # {"seconds", "batches"} per finished training epoch
        self._epoch_start = 0.0
        self._val_seconds = 0.0
        self._val_start = 0.0
        self._batches = 0
        self._forward_seconds = 0.0
        self._forward_start: list[float] = []
        self._case_start = 0.0
        self.cases: list[dict[str, float]] = []  # {"forward", "step"} per test batch (one case each)
        self._hooks: list[RemovableHandle] = []
        self._device: torch.device | None = None  # a CUDA device to wait for before each reading

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        device = trainer.strategy.root_device  # where the model runs (it may not be moved there yet)
        self._device = device if device.type == "cuda" else None

    def _now(self) -> float:
        if self._device is not None:
            torch.cuda.synchronize(self._device)
        return time.perf_counter()

    # -- training --------------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_start, self._val_seconds, self._batches = self._now(), 0.0, 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._batches += 1

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._val_start = self._now()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._val_seconds += self._now() - self._val_start

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        seconds = self._now() - self._epoch_start - self._val_seconds
        if self._batches:
            self.epochs.append({"seconds": seconds, "batches": float(self._batches)})

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": list(self.epochs)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs = list(state_dict.get("epochs", []))

    # -- test ------------------------------------------------------------------------------------------
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.cases = []
        net = getattr(pl_module, "net", pl_module)
        assert isinstance(net, nn.Module)
        self._hooks = [net.register_forward_pre_hook(self._pre), net.register_forward_hook(self._post)]

    def _pre(self, *args: Any) -> None:
        self._forward_start.append(self._now())

    def _post(self, *args: Any) -> None:
        if self._forward_start:
            self._forward_seconds += self._now() - self._forward_start.pop()

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._case_start, self._forward_seconds = self._now(), 0.0

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self.cases.append({"forward": self._forward_seconds, "step": self._now() - self._case_start})

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self._write(RunLayout(Path(trainer.default_root_dir)), self.summary(pl_module))

    def summary_items(self, stage: str, pl_module: nn.Module) -> dict[str, Any]:
        """Added to the test summary by the task when it writes it."""
        return self.summary(pl_module) if stage == "test" else {}

    def summary(self, pl_module: nn.Module) -> dict[str, float | int | None]:
        """The numbers written at the end of ``test`` (None where nothing was measured)."""
        net = getattr(pl_module, "net", pl_module)
        full = [e for e in self.epochs if e["batches"] == max((e["batches"] for e in self.epochs), default=0)]
        epochs = full or self.epochs
        seconds = sum(e["seconds"] for e in self.epochs)
        batches = sum(e["batches"] for e in self.epochs)
        return {
            "params": sum(p.numel() for p in net.parameters() if p.requires_grad),
            "train_seconds_per_epoch": _mean([e["seconds"] for e in epochs]),
            "train_seconds_per_step": seconds / batches if batches else None,
            "inference_seconds_per_case": _mean([c["forward"] for c in self.cases]),
            "test_seconds_per_case": _mean([c["step"] for c in self.cases]),
        }

    @rank_zero_only
    def _write(self, layout: RunLayout, summary: dict[str, Any]) -> None:
        write_json(layout.timing, summary)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
