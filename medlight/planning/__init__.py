"""``medlight plan``: configure training from the data and a time budget (nnU-Net's rules, measured step time).

Modules: :mod:`fingerprint` (the data, in the integrity check's pass), :mod:`rules` (every choice with its
published reason), :mod:`budget` (step time on this machine -> number of steps), :mod:`segmentation` (a plan
per configuration), :mod:`classification` (2D image classification: a folder of class sub-folders or a CSV),
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
) -> list[Path]:
    """Plan training on ``dataset``; return the plan folders written (the first is the primary plan)."""
    import torch

    from medlight.planning.classification import is_classification, plan_classification
    from medlight.planning.fingerprint import fingerprint
    from medlight.planning.segmentation import plan_segmentation

    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError("--accelerator gpu: no CUDA device here; plan on the machine that will train")
    root = Path(dataset)
    folder = Path(out) if out else Path("plans") / root.stem
    if is_classification(root):
        return [plan_classification(root, budget_minutes, accelerator, folder)]
    return plan_segmentation(fingerprint(root, labels), budget_minutes, accelerator, folder)
