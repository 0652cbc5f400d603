"""The run folder: every path a run writes, the one atomic writer, and the summary written once per stage.

A run folder (``trainer.default_root_dir``) holds::

    config.yaml  manifest.json  manifest_history.jsonl  metrics.csv  wandb_run_id.txt  wandb/  tensorboard/
    checkpoints/{best,last}.ckpt
    metrics/<stage>_per_case.csv  metrics/<stage>_summary.json  metrics/timing.json  ...
    predictions/  reconstructions/

Readers (the study runner and report, tests) take the paths from :class:`RunLayout` rather than spelling them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def manifest_history(self) -> Path:
        return self.root / "manifest_history.jsonl"

    @property
    def metrics_log(self) -> Path:
        """The CSV logger's ``metrics.csv`` (every logged scalar, one row per step or epoch)."""
        return self.root / "metrics.csv"

    @property
    def wandb_run_id(self) -> Path:
        return self.root / "wandb_run_id.txt"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files (``--tracking.tensorboard true``)."""
        return self.root / "tensorboard"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.ckpt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    def per_case(self, stage: str) -> Path:
        return self.metrics / f"{stage}_per_case.csv"

    def summary(self, stage: str) -> Path:
        return self.metrics / f"{stage}_summary.json"

    def table(self, name: str) -> Path:
        """Any other table of the run, e.g. ``test_slices.csv``."""
        return self.metrics / name

    @property
    def timing(self) -> Path:
        return self.metrics / "timing.json"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def external(self) -> Path:
        """``external.json``: the sources of a folder scored or made outside training (evaluate, fold ensemble)."""
        return self.root / "external.json"

    @property
    def reconstructions(self) -> Path:
        """Reconstructed volumes (NIfTI) and side-by-side figures (PNG) of a reconstruction run's test."""
        return self.root / "reconstructions"

    def resume_checkpoint(self) -> Path | None:
        """The newest of ``checkpoints/last.ckpt`` and Lightning's SLURM ``hpc_ckpt_*.ckpt`` (None: none yet)."""
        candidates = [p for p in [self.last_checkpoint, *self.root.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
        return max(candidates, key=lambda p: p.stat().st_mtime, default=None)

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary files of :func:`atomic_write` left by a killed process (its pid is not running)."""
        removed = []
        for tmp in self.root.rglob(".*.tmp"):
            pid = tmp.name.rsplit(".", 2)[-2]
            if pid.isdigit() and not _running(int(pid)):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        return removed

    def is_complete(self) -> bool:
        """Fit and test both finished: the test summary is written once, at the very end of ``test``."""
        return self.summary("test").is_file()

    def read_summary(self, stage: str = "test") -> dict[str, Any]:
        return json.loads(self.summary(stage).read_text())

    def write_summary(self, stage: str, summary: dict[str, Any]) -> Path:
        return write_json(self.summary(stage), summary)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """What makes a run folder one run: the task, its network and the data module with its data set. Other
    settings (steps, loaders, logging) may change when a run is resumed."""
    model, data = config.get("model") or {}, config.get("data") or {}
    data_args = data.get("init_args") or {}
    return {
        "model": model.get("class_path"),
        "model.net": (model.get("init_args") or {}).get("net"),
        "data": data.get("class_path"),
        **{f"data.{k}": data_args.get(k) for k in ("dataset", "csv", "image_folder", "volumes", "simulation")},
    }


@runtime_checkable
class SummaryContributor(Protocol):
    """A callback that adds entries to a stage's summary (e.g. :class:`medlight.runs.RunTiming`)."""

    def summary_items(self, stage: str, pl_module: Any) -> dict[str, Any]: ...


# -- the one atomic writer ------------------------------------------------------------------------------
@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file in the same folder, fsynced, then renamed over it.

    A crash or kill during the write leaves the previous file intact and no temporary file behind
    (short of a kill -9 between ``open`` and ``rename``, whose leftover is a hidden ``.<name>.<pid>.tmp``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, newline=None if "b" in mode else "") as f:  # newline "": CSV writes its own
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_text(path: Path, text: str) -> Path:
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)


def write_json(path: Path, content: Any) -> Path:
    return write_text(path, json.dumps(content, indent=1, default=str) + "\n")


def write_table(rows: Sequence[dict], path: Path) -> Path:
    """Write dict rows as CSV (columns from the first row), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["case_id"])
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())
