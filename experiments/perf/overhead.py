"""Framework overhead: a medlight training step vs a plain PyTorch + MONAI loop doing identical work.

Both loops train the same network from the same initial weights on the same pre-made batches (real hippocampus
patches, materialised once so that data loading is excluded) with the same optimizer and loss, and both run in
one process, interleaved step by step: a callback runs one plain step beside each medlight step (before it on
even steps, after it on odd ones), so drift of the machine (other jobs, clocks, caches) falls on both alike.
The medlight step is timed from one batch start to the next, less the plain step inside, so it carries every
piece of Lightning bookkeeping between two batches.

Reported, for wall and CPU time (``time.process_time``, every thread of the process): the median per step, the
ratio of the mean step times with a 95% bootstrap interval (blocks of consecutive steps resampled, since
neighbouring steps share the machine's state), and whether the two networks' weights are bitwise equal at the end.

    python experiments/perf/overhead.py --steps 300
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer, seed_everything
from monai.losses import DiceCELoss

sys.path.insert(0, str(Path(__file__).parent))
from common import header, median, table  # noqa: E402

from medlight.data import SegmentationDataModule, SegmentationSpec  # noqa: E402
from medlight.nets import ResUNet  # noqa: E402
from medlight.tasks import SegmentationTask  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def make_batches(n: int, batch_size: int, patch: tuple[int, ...]) -> list[dict]:
    dm = SegmentationDataModule(
        str(REPO / "data" / "hippocampus"),
        split_file=str(REPO / "data" / "hippocampus" / "splits.json"),
        patch_size=patch,
        batch_size=batch_size,
        cache="memory",
    )
    dm.setup("fit")
    batches = []
    while len(batches) < n:
        for batch in dm.train_dataloader():
            batches.append({"image": batch["image"].as_tensor().clone(), "label": batch["label"].as_tensor().clone()})
            if len(batches) == n:
                break
    return batches


def optimizer(params):
    return torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-5)


class PlainLoop:
    """The loop a user writes by hand: forward, Dice+CE, backward, AdamW step."""

    def __init__(self, net: torch.nn.Module, batches: list[dict]) -> None:
        self.net, self.batches = net.train(), batches
        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        self.opt = optimizer(net.parameters())

    def step(self, i: int) -> None:
        batch = self.batches[i]
        self.opt.zero_grad()
        loss = self.loss_fn(self.net(batch["image"]), batch["label"])
        loss.backward()
        self.opt.step()


class InMemory(LightningDataModule):
    def __init__(self, batches: list[dict], patch: tuple[int, ...]) -> None:
        super().__init__()
        self.batches = batches
        self.spec = SegmentationSpec(["anterior", "posterior"], 1, 3, patch)
        self.case_ids: list[str] = []  # no evaluation here: the test-time parts of the contract are never called

    def to_source_geometry(self, *args):
        raise NotImplementedError

    def transform_for(self, *args):
        raise NotImplementedError

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.batches, batch_size=None, shuffle=False)


class Interleave(Callback):
    """Runs plain step i beside medlight step i, before it on even steps and after it on odd ones (so neither
    loop always finds the caches as the other left them), and stamps both on the wall and CPU clocks."""

    def __init__(self, plain: PlainLoop) -> None:
        self.plain = plain
        self.plain_wall: list[float] = []
        self.plain_cpu: list[float] = []
        self.ours_wall: list[float] = []
        self.ours_cpu: list[float] = []
        self._ours_started: tuple[float, float] | None = None
        self._plain_inside = (0.0, 0.0)  # a plain step run inside the current medlight interval

    def _plain_step(self, i: int) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        self.plain.step(i)
        took = (time.perf_counter() - wall, time.process_time() - cpu)
        self.plain_wall.append(took[0])
        self.plain_cpu.append(took[1])
        return took

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        if self._ours_started is not None:  # the previous medlight step ends here
            self.ours_wall.append(wall - self._ours_started[0] - self._plain_inside[0])
            self.ours_cpu.append(cpu - self._ours_started[1] - self._plain_inside[1])
        self._plain_inside = (0.0, 0.0)
        if batch_idx % 2 == 0:
            self._plain_step(batch_idx)
        self._ours_started = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        if batch_idx % 2 == 1:
            self._plain_inside = self._plain_step(batch_idx)


def ratio_interval(ours: np.ndarray, plain: np.ndarray, block: int, rng: np.random.Generator) -> tuple[float, ...]:
    """Ratio of mean step times and its 95% moving-block bootstrap interval (the pairs stay together)."""
    n = len(ours)
    starts = np.arange(n - block + 1)
    ratios = []
    for _ in range(4000):
        picked = rng.choice(starts, size=int(np.ceil(n / block)))
        idx = (picked[:, None] + np.arange(block)).ravel()[:n]
        ratios.append(ours[idx].sum() / plain[idx].sum())
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(ours.sum() / plain.sum()), float(low), float(high)


class BareLightning(LightningModule):
    """The least a LightningModule can be: the same step with nothing of medlight (Lightning's own cost)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.loss(self.net(batch["image"]), batch["label"])

    def configure_optimizers(self):
        return optimizer(self.parameters())


def interleaved(module: LightningModule, initial: torch.nn.Module, batches: list[dict], patch) -> tuple:
    """Train ``module`` (holding a copy of ``initial`` as ``net``) and a plain loop side by side."""
    plain = PlainLoop(copy.deepcopy(initial), batches)
    clock = Interleave(plain)
    trainer = Trainer(
        max_steps=len(batches),
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[clock],
    )
    trainer.fit(module, InMemory(batches, patch))
    net: Any = module.net
    equal = all(torch.equal(v, net.state_dict()[k]) for k, v in plain.net.state_dict().items())
    return clock, equal


def rows_of(name: str, clock: Interleave, warmup: int, block: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for clock_name, ours, theirs in (
        ("wall", clock.ours_wall, clock.plain_wall),
        ("cpu", clock.ours_cpu, clock.plain_cpu),
    ):
        o, p = np.asarray(ours[warmup:]), np.asarray(theirs[warmup : len(ours)])
        ratio, low, high = ratio_interval(o, p, block, rng)
        rows.append(
            {
                "loop": name,
                "clock": clock_name,
                "plain ms/step": 1000 * median(p.tolist()),
                "loop ms/step": 1000 * median(o.tolist()),
                "extra ms/step (mean)": 1000 * float((o - p).mean()),
                "ratio of means": ratio,
                "95% CI": f"[{low:.4f}, {high:.4f}]",
                "within 1%": "yes" if high <= 1.01 else "no",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=10, help="steps of each loop left out of the statistics")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block", type=int, default=10, help="bootstrap block length in steps")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    seed_everything(0)

    # 1. the real step: the main job's network on real patches
    patch = (32, 48, 32)
    batches = make_batches(args.steps + 1, args.batch_size, patch)  # +1: the last medlight step has no end stamp
    initial = ResUNet(3, 1, 3, channels=(16, 32, 64, 128), strides=(2, 2, 2, 1))
    clock, equal = interleaved(SegmentationTask(copy.deepcopy(initial), optimizer=optimizer), initial, batches, patch)
    work = f"3D Res-UNet, batch {args.batch_size} x 32x48x32, AdamW, Dice+CE"
    print(header(f"Framework overhead per training step ({work})"))
    print(
        f"{args.steps - args.warmup} interleaved step pairs after {args.warmup} warm-up pairs; bootstrap blocks of "
        f"{args.block} steps; 'within 1%': the interval's upper end <= 1.01\n"
    )
    rows = rows_of("medlight SegmentationTask", clock, args.warmup, args.block, rng)
    print(table(rows, list(rows[0])))
    print(f"\nweights after {len(batches)} steps bitwise equal to the plain loop's: {equal}")

    # 2. the fixed cost alone: a 1x1x1 convolution on 8^3 voxels, so that nearly all of a step is bookkeeping
    tiny_patch = (8, 8, 8)
    generator = torch.Generator().manual_seed(0)
    tiny = [
        {
            "image": torch.randn(1, 1, *tiny_patch, generator=generator),
            "label": torch.randint(0, 3, (1, 1, *tiny_patch), generator=generator),
        }
        for _ in range(args.steps + 1)
    ]
    net = torch.nn.Conv3d(1, 3, 1)
    rows = []
    for name, module in (
        ("bare LightningModule", BareLightning(copy.deepcopy(net))),
        ("medlight SegmentationTask", SegmentationTask(copy.deepcopy(net), optimizer=optimizer)),
    ):
        clock, same = interleaved(module, net, tiny, tiny_patch)
        rows += [
            r | {"weights equal": same}
            for r in rows_of(name, clock, args.warmup, args.block, rng)
            if r["clock"] == "wall"
        ]
    print("\n### Fixed cost per step (1x1x1 convolution on 8^3 voxels: almost all bookkeeping)\n")
    print(table(rows, ["loop", "clock", "plain ms/step", "loop ms/step", "extra ms/step (mean)", "weights equal"]))


if __name__ == "__main__":
    main()
