"""The run manifest: everything a reader needs to redo a run, written into its folder."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from medlight.contracts import RunFacts
from medlight.runs.layout import RunLayout, write_json

PACKAGES = ("medlight", "torch", "lightning", "monai", "torchmetrics", "numpy", "nibabel", "jsonargparse", "wandb")


def git_state(path: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the git work tree containing ``path`` (the medlight source by default).

    Outside a work tree (an installed package, a container image) the commit is ``MEDLIGHT_GIT_COMMIT``, which
    the image bakes in at build (``--build-arg GIT_COMMIT=...``); ``dirty`` is then unknown (None).
    """
    cwd = path or Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        baked = os.environ.get("MEDLIGHT_GIT_COMMIT") or None
        return {"commit": None if baked == "unknown" else baked, "dirty": None}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpus": gpus,
        "cuda": torch.version.cuda,
    }


class RunManifest(Callback):
    """Write ``manifest.json`` (this invocation) and append to ``manifest_history.jsonl`` in the run folder.

    One invocation may run several stages (``fit`` then ``test``); they are listed under ``stages``.

    Args:
        config: the resolved configuration of the run (as the CLI parsed it).
        filename: ``manifest.json`` for ``fit``; ``manifest_<subcommand>.json`` for a later test, validate or
            predict of the same folder, so that the fit's manifest is never overwritten.
    """

    def __init__(self, config: dict[str, Any] | None = None, filename: str = "manifest.json") -> None:
        self.config = config
        self.filename = filename
        self.manifest: dict[str, Any] | None = None

    @rank_zero_only
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        layout = RunLayout(Path(trainer.default_root_dir))
        if self.manifest is not None:
            self.manifest["stages"].append(stage)
            write_json(layout.root / self.filename, self.manifest)
            return
        datamodule = getattr(trainer, "datamodule", None)
        data = datamodule.run_facts() if isinstance(datamodule, RunFacts) else {}
        manifest = {
            "stages": [stage],
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": sys.argv,
            "git": git_state(),
            "packages": package_versions(),
            "seeds": {
                "seed_everything": _int_or_none(os.environ.get("PL_GLOBAL_SEED")),
                "data": data.pop("data_seed", None),
                "split": data.pop("split_seed", None),
            },
            **data,  # split file and hash, fold, any labeled-subset file and hash
            "machine": machine(),
            "world_size": trainer.world_size,
            "config": self.config,
        }
        self.manifest = manifest
        write_json(layout.root / self.filename, manifest)
        short = {k: manifest.get(k) for k in ("stages", "time", "command", "git", "split_sha256")}
        with layout.manifest_history.open("a") as f:
            f.write(json.dumps(short, default=str) + "\n")


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None
