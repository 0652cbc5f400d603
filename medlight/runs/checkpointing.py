"""Checkpoint writing that never leaves a half-written or NaN-poisoned file behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from medlight.errors import NonFiniteError
from medlight.runs.layout import RunLayout, atomic_write, write_text


def nonfinite_entries(state_dict: dict[str, Any]) -> list[str]:
    """Names of floating-point tensors in ``state_dict`` that hold NaN or Inf."""
    return [
        name
        for name, value in state_dict.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()
    ]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write through :func:`medlight.runs.layout.atomic_write` (a temporary file, fsynced, renamed over the target).

    A crash or kill during the write leaves the previous checkpoint intact. Weights holding NaN/Inf are
    refused with :class:`NonFiniteError`, so a diverged model never overwrites a good checkpoint.
    Remote paths (``scheme://``) fall back to Lightning's own writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        bad = nonfinite_entries(checkpoint.get("state_dict", {}))
        if bad:
            raise NonFiniteError(
                f"refusing to write checkpoint {path}: NaN/Inf in {len(bad)} weight tensor(s) "
                f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); the model diverged"
            )
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_write(Path(path), "wb") as f:
            torch.save(checkpoint, f)


class BestCheckpoint(ModelCheckpoint):
    """``best.ckpt``, and with it the validation per-case table of the same epoch
    (``metrics/best_val_per_case.csv``): out-of-fold scores are then those of the selected model, not of
    whichever validation came last."""

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        layout = RunLayout(Path(trainer.default_root_dir))
        if trainer.is_global_zero and layout.per_case("val").is_file():
            write_text(layout.per_case("best_val"), layout.per_case("val").read_text())


def run_checkpoints(monitor: tuple[str, str] | None, every_n_steps: int) -> list[ModelCheckpoint]:
    """The checkpoints of every fit: ``best.ckpt`` by the task's ``monitor`` (metric, ``min``/``max``; none
    when the task selects no best, e.g. it tests its final weights), and ``last.ckpt`` written at the end of
    every epoch and every ``every_n_steps`` optimizer steps (0: epochs only), so a killed run loses little."""
    out: list[ModelCheckpoint] = []
    if monitor is not None:
        metric, mode = monitor
        out.append(
            BestCheckpoint(
                filename="best",
                monitor=metric,
                mode=mode,
                save_top_k=1,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    # Lightning allows one trigger per callback: one for epochs (also without validation), one for steps
    out.append(
        ModelCheckpoint(save_last=True, save_top_k=0, save_on_train_epoch_end=True, enable_version_counter=False)
    )
    if every_n_steps > 0:
        out.append(
            ModelCheckpoint(
                save_last=True, save_top_k=0, every_n_train_steps=every_n_steps, enable_version_counter=False
            )
        )
    return out
