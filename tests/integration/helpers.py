"""Run the real ``medlight`` CLI in-process or as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from medlight.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY_3D = str(REPO / "tests" / "configs" / "tiny_3d.yaml")


def tiny_fit_args(dataset: Path, run_dir: Path, *extra: str, command: str = "fit") -> list[str]:
    return [
        command,
        "--config",
        TINY_3D,
        "--data.dataset",
        str(dataset),
        "--data.split_file",
        str(dataset.parent / "splits.json"),
        "--trainer.default_root_dir",
        str(run_dir),
        *extra,
    ]


def run_cli(args: list[str]) -> int:
    return main(args)


def run_subprocess(args: list[str], timeout: int = 600, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "medlight", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        **kwargs,
    )
