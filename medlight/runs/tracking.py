"""Loggers: a local CSV logger always, Weights & Biases offline by default (no account, no network), TensorBoard."""

from __future__ import annotations

import csv
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.logger import _flatten_dict, _sanitize_params
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from medlight.runs.layout import RunLayout, atomic_write, write_text

log = logging.getLogger(__name__)
ONLINE_TIMEOUT_S = 15  # how long wandb may try to reach its server before the run logs offline instead


@dataclass
class Tracking:
    """Experiment tracking settings.

    Attributes:
        wandb: ``offline`` writes a wandb run under the run folder (sync later with ``wandb sync``);
            ``online`` streams to the server (falls back to offline tracking if it cannot start);
            ``disabled`` logs to CSV only.
        tensorboard: also write TensorBoard event files under ``<run>/tensorboard`` (``tensorboard --logdir``).
        project: wandb project.
        group: wandb group, e.g. the study a run belongs to (default: the data set's name).
        name: run name on the dashboard (default: the run folder's name).
        tags: wandb tags (the task, the network and any study keys are added).
        checkpoint_artifact: after fit, log the best checkpoint as a wandb artifact (default: when online).
        study: the study this run belongs to (set by ``medlight study run``), with its ``budget``, ``variant``
            and grid ``point`` (factor -> value); they become dashboard config keys and tags.
    """

    wandb: Literal["offline", "online", "disabled"] = "offline"
    tensorboard: bool = False
    project: str = "medlight"
    group: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    checkpoint_artifact: bool | None = None
    study: str | None = None
    budget: str | None = None
    variant: str | None = None
    point: dict[str, Any] | None = None


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; a resumed run must append to it instead."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class ResumableCSVLogger(CSVLogger):
    """CSV logger whose ``metrics.csv`` survives resuming: new rows are appended (the header may grow)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment  # type: ignore[return-value]


def drop_replayed_rows(metrics_log: Path, global_step: int) -> int:
    """Drop the rows of ``metrics.csv`` logged at or after ``global_step``: a run resumed from a checkpoint of
    that step logs those steps again, and two rows for one step would double them in learning curves."""
    if not metrics_log.is_file():
        return 0
    with metrics_log.open(newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = list(reader.fieldnames or []), list(reader)
    keep = [r for r in rows if not r.get("step") or int(float(r["step"])) < global_step]
    if len(keep) < len(rows):
        with atomic_write(metrics_log) as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(keep)
    return len(rows) - len(keep)


class MergingTensorBoardLogger(TensorBoardLogger):
    """TensorBoard logger whose HPARAMS entry holds every hyperparameter logged, whichever call came first.

    TensorBoard shows the first HPARAMS entry of a run, and Lightning's own logger writes one per call, so the
    task's few plain hyperparameters would hide the resolved config. This one collects them and writes the
    entry once per event file, with the first metrics (or at the end).
    """

    def __init__(self, save_dir: str) -> None:
        super().__init__(save_dir=save_dir, name="tensorboard", version="", default_hp_metric=False)
        self._hparams_writer: Any = None

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._write_hparams()
        super().log_metrics(metrics, step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self._write_hparams()
        super().finalize(status)

    def _write_hparams(self) -> None:
        writer = self.experiment._get_file_writer()
        if writer is self._hparams_writer or not self.hparams:
            return
        from torch.utils.tensorboard.summary import hparams

        flat = _flatten_dict(_sanitize_params(dict(self.hparams)))
        for summary in hparams({k: v for k, v in flat.items() if isinstance(v, (bool, int, float, str))}, {}):
            writer.add_summary(summary)
        self._hparams_writer = writer


def build_loggers(run_dir: Path, tracking: Tracking) -> list[Logger]:
    """CSV logger writing ``<run_dir>/metrics.csv``, a wandb logger unless disabled, TensorBoard if asked."""
    loggers: list[Logger] = [ResumableCSVLogger(save_dir=str(run_dir), name="", version="")]
    if tracking.wandb != "disabled":
        wandb_logger = _wandb_logger(run_dir, tracking, offline=tracking.wandb == "offline")
        if isinstance(wandb_logger, Exception) and tracking.wandb == "online":
            rank_zero_warn(
                f"wandb could not start online ({_one_line(wandb_logger)}); logging offline instead "
                f"(upload later with `wandb sync {run_dir}/wandb/offline-run-*`)"
            )
            wandb_logger = _wandb_logger(run_dir, tracking, offline=True)
        if isinstance(wandb_logger, Exception):
            rank_zero_warn(f"wandb could not start ({_one_line(wandb_logger)}); no wandb run")
        elif wandb_logger is not None:
            loggers.append(wandb_logger)
    if tracking.tensorboard:
        loggers.append(MergingTensorBoardLogger(save_dir=str(RunLayout(run_dir).tensorboard.parent)))
    return loggers


def _wandb_logger(run_dir: Path, tracking: Tracking, offline: bool) -> Logger | Exception | None:
    """A started wandb logger, the error it failed with, or None if wandb is not installed."""
    try:
        import wandb
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:
        rank_zero_warn("wandb is not installed; no wandb run")
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    run_dir.mkdir(parents=True, exist_ok=True)
    id_file = RunLayout(run_dir).wandb_run_id  # a resumed run continues the same dashboard run
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
    if getattr(rank_zero_only, "rank", 0) == 0 and not id_file.is_file():
        write_text(id_file, run_id + "\n")
    try:
        logger = WandbLogger(
            save_dir=str(run_dir),
            project=tracking.project,
            group=tracking.group,
            name=tracking.name or run_dir.name,
            tags=list(tracking.tags),
            id=run_id,
            resume="allow",
            offline=offline,
            mode="offline" if offline else "online",  # explicit: wandb keeps the mode of an earlier start otherwise
            settings=wandb.Settings(init_timeout=ONLINE_TIMEOUT_S, console="off"),
        )
        _ = logger.experiment  # start now, so a failure shows here and not in the middle of training
        return logger
    except Exception as err:  # wandb raises many kinds; tracking must never stop training
        wandb.teardown()  # a failed start keeps its run id busy in wandb's service; the retry needs a fresh one
        return err


def _one_line(err: Exception) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}"[:200]
