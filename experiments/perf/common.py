"""Shared helpers of the performance benchmarks: machine/version header, medians, tables."""

from __future__ import annotations

import platform
import statistics
from collections.abc import Sequence
from importlib import metadata

import torch


def header(title: str) -> str:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"## {title}\n\nmachine: {cpu}, {torch.get_num_threads()} torch threads, GPU {gpu}; "
        f"python {platform.python_version()}, torch {torch.__version__}, monai {version('monai')}, "
        f"lightning {version('lightning')}, medlight {version('medlight')}\n"
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of ``rows`` restricted to ``columns``."""

    def cell(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
