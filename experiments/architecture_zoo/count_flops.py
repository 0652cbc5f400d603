"""Parameters and training FLOPs (forward + backward of one batch) of model configs, on the meta device.

Nothing is computed, so it takes seconds even on a busy machine::

    python experiments/architecture_zoo/count_flops.py unet_2d deeplabv3plus_2d hrnet_3d
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

MODELS = Path(__file__).resolve().parents[2] / "configs" / "model"


def build(spec: dict[str, Any]) -> nn.Module:
    """Instantiate a ``class_path``/``init_args`` tree (nested networks such as ``PadToMultiple``)."""
    args = {
        k: build(v) if isinstance(v, dict) and "class_path" in v else v for k, v in spec.get("init_args", {}).items()
    }
    module, name = spec["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**args)


def count(config: str) -> tuple[int, float]:
    """(parameters, GFLOP of one training batch: 8 slices of 48x64 in 2D, 4 patches of 32x48x32 in 3D)."""
    net = build(yaml.safe_load((MODELS / f"{config}.yaml").read_text())["model"]["init_args"]["net"])
    params = sum(p.numel() for p in net.parameters())
    shape = (8, 1, 48, 64) if config.endswith("_2d") else (4, 1, 32, 48, 32)
    net = net.to("meta")
    with FlopCounterMode(display=False) as counter:
        net(torch.empty(shape, device="meta")).sum().backward()
    return params, counter.get_total_flops() / 1e9


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(p.stem for p in MODELS.glob("*.yaml")):
        n, gflop = count(name)
        print(f"{name:24s} params {n:>11,d}  train GFLOP/batch {gflop:8.2f}")
