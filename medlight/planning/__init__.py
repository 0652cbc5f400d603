"""``medlight plan``: configure training from the data and a time budget (nnU-Net's rules, measured step time).

Modules: :mod:`fingerprint` (the data, in the integrity check's pass), :mod:`rules` (every choice with its
published reason), :mod:`budget` (step time on this machine -> number of steps), :mod:`segmentation` (a plan
per configuration), :mod:`classification` (2D image classification: a folder of class sub-folders, a CSV, or slices
of volumes),
:mod:`write` (config fragments that stack, plan.md). Planning may import data, nets, ops
and runs; never tasks (it writes their configs and trains nothing through them), studies or the CLI.
"""

from __future__ import annotations

from pathlib import Path

from medlight.errors import ConfigError


def plan(
    dataset: str | Path,
    budget_minutes: float = 10.0,
    accelerator: str = "cpu",
    out: str | Path | None = None,
    labels: dict[int, str] | None = None,
    slices: int | None = None,
    positive_labels: list[int] | None = None,
) -> list[Path]:
    """Plan training on ``dataset``; return the plan folders written (the first is the primary plan).

    ``slices``: plan a classifier of the 2D slices across this axis of the (segmentation) volumes instead,
    a slice positive when it holds a label of ``positive_labels`` (default: any foreground)."""
    import torch

    from medlight.planning.classification import image_source, is_classification, plan_classification, slice_source
    from medlight.planning.fingerprint import fingerprint
    from medlight.planning.segmentation import plan_segmentation

    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError("--accelerator gpu: no CUDA device here; plan on the machine that will train")
    if positive_labels and slices is None:
        raise ConfigError("--positive-labels chooses the positive slices: it needs --slices AXIS")
    root = Path(dataset)
    folder = Path(out) if out else Path("plans") / root.stem
    if slices is not None:
        source = slice_source(root, slices, list(positive_labels or []), labels)
        return [plan_classification(source, budget_minutes, accelerator, folder)]
    if is_classification(root):
        return [plan_classification(image_source(root), budget_minutes, accelerator, folder)]
    return plan_segmentation(fingerprint(root, labels), budget_minutes, accelerator, folder)
