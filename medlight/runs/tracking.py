"""Loggers: a local CSV logger always, and Weights & Biases offline by default (no account, no network)."""

from __future__ import annotations

import csv
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from medlight.runs.layout import RunLayout, atomic_write, write_text

log = logging.getLogger(__name__)


@dataclass
class Tracking:
    """Experiment tracking settings.

    Attributes:
        wandb: ``offline`` writes a wandb run under the run folder (sync later with ``wandb sync``);
            ``online`` streams to the server (falls back to offline tracking if it cannot start);
            ``disabled`` logs to CSV only.
        project: wandb project.
        group: wandb group, e.g. the study a run belongs to.
        name: run name on the dashboard (default: the run folder's name).
        tags: wandb tags.
    """

    wandb: Literal["offline", "online", "disabled"] = "offline"
    project: str = "medlight"
    group: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)


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


def build_loggers(run_dir: Path, tracking: Tracking) -> list[Logger]:
    """CSV logger writing ``<run_dir>/metrics.csv``, plus a wandb logger unless disabled."""
    loggers: list[Logger] = [ResumableCSVLogger(save_dir=str(run_dir), name="", version="")]
    if tracking.wandb == "disabled":
        return loggers
    wandb_logger = _wandb_logger(run_dir, tracking, offline=tracking.wandb == "offline")
    if wandb_logger is None and tracking.wandb == "online":
        rank_zero_warn("wandb could not start online; logging to wandb offline instead")
        wandb_logger = _wandb_logger(run_dir, tracking, offline=True)
    if wandb_logger is not None:
        loggers.append(wandb_logger)
    return loggers


def _wandb_logger(run_dir: Path, tracking: Tracking, offline: bool) -> Logger | None:
    try:
        import wandb
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:
        rank_zero_warn("wandb is not installed; logging to CSV only")
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
            settings=wandb.Settings(init_timeout=90, console="off"),
        )
        _ = logger.experiment  # start now, so a failure shows here and not in the middle of training
        return logger
    except Exception as err:  # wandb raises many kinds; tracking must never stop training
        rank_zero_warn(f"wandb could not start ({type(err).__name__}: {err})")
        return None
