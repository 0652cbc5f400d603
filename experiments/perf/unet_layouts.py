"""Training-step time of the two U-Net layouts `medlight plan` chooses between, side by side in one run.

nnU-Net's layout (MONAI ``DynUNet``: the first stage convolves at full resolution) against the layout the planner
uses on CPU (medlight ``ResUNet`` with the first stage strided, as MONAI's ``UNet``), with the same 4 levels,
widths 16-128 and total stride 8, on the same random batch, with Dice+CE and AdamW. The steps alternate between
the two networks, so drift of the machine falls on both alike; medians and their ratio are printed.

    python experiments/perf/unet_layouts.py --steps 20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from monai.losses import DiceCELoss
from monai.networks.nets import DynUNet

sys.path.insert(0, str(Path(__file__).parent))
from common import header, median, table  # noqa: E402

from medlight.nets import ResUNet  # noqa: E402


def networks(dims: int) -> dict[str, torch.nn.Module]:
    widths = [16, 32, 64, 128]
    full = [[1] * dims] + [[2] * dims] * 3
    return {
        "DynUNet (nnU-Net: full-resolution first stage)": DynUNet(
            dims, 1, 3, [[3] * dims] * 4, full, full[1:], filters=widths, norm_name="instance", res_block=False
        ),
        "ResUNet (first stage strided: plan on CPU)": ResUNet(
            spatial_dims=dims, in_channels=1, out_channels=3, channels=widths, strides=full[1:] + [[1] * dims]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(header("U-Net layouts: seconds per training step"))
    rows = []
    for shape in ([2, 1, 40, 56, 40], [32, 1, 56, 40]):
        x = torch.randn(*shape)
        y = torch.randint(0, 3, (shape[0], 1, *shape[2:]))
        nets = networks(len(shape) - 2)
        optimizers = {k: torch.optim.AdamW(n.parameters(), lr=1e-3) for k, n in nets.items()}
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        times: dict[str, list[float]] = {k: [] for k in nets}
        for step in range(args.warmup + args.steps):
            order = list(nets) if step % 2 == 0 else list(reversed(nets))
            for name in order:
                start = time.perf_counter()
                loss = loss_fn(nets[name](x), y)
                optimizers[name].zero_grad()
                loss.backward()
                optimizers[name].step()
                if step >= args.warmup:
                    times[name].append(time.perf_counter() - start)
        medians = {k: median(v) for k, v in times.items()}
        strided = medians[list(nets)[1]]
        for name, value in medians.items():
            rows.append({"batch": "x".join(map(str, shape)), "network": name, "median s/step": value,
                         "ratio to strided": value / strided})  # fmt: skip
    print(table(rows, ["batch", "network", "median s/step", "ratio to strided"]))


if __name__ == "__main__":
    main()
