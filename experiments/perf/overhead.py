"""Framework overhead: a medlight training step vs a plain PyTorch + MONAI loop doing identical work.

Both train the same network from the same initial weights on the same pre-made batches (real hippocampus
patches, materialised once so that data loading is excluded) with the same optimizer and loss. Reported:
median seconds per step over the timed steps, the ratio, and whether the weights after N steps are equal.

    python experiments/perf/overhead.py --steps 60 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer, seed_everything
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


def plain_loop(net: torch.nn.Module, batches: list[dict]) -> tuple[list[float], torch.nn.Module]:
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = optimizer(net.parameters())
    net.train()
    stamps = []
    for batch in batches:
        stamps.append(time.perf_counter())
        opt.zero_grad()
        loss = loss_fn(net(batch["image"]), batch["label"])
        loss.backward()
        opt.step()
    stamps.append(time.perf_counter())
    return [b - a for a, b in zip(stamps, stamps[1:])], net


class InMemory(LightningDataModule):
    def __init__(self, batches: list[dict], patch: tuple[int, ...]) -> None:
        super().__init__()
        self.batches = batches
        self.spec = SegmentationSpec(["anterior", "posterior"], 1, 3, patch)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.batches, batch_size=None, shuffle=False)


class Stamps(Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_start(self, *args) -> None:
        self.stamps.append(time.perf_counter())

    def on_train_end(self, *args) -> None:
        self.stamps.append(time.perf_counter())


def medlight_loop(
    net: torch.nn.Module, batches: list[dict], patch: tuple[int, ...]
) -> tuple[list[float], torch.nn.Module]:
    task = SegmentationTask(net, optimizer=optimizer)
    stamps = Stamps()
    trainer = Trainer(
        max_steps=len(batches),
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[stamps],
    )
    trainer.fit(task, InMemory(batches, patch))
    s = stamps.stamps
    return [b - a for a, b in zip(s, s[1:])], task.net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    patch = (32, 48, 32)
    batches = make_batches(args.steps, args.batch_size, patch)
    seed_everything(0)
    initial = ResUNet(3, 1, 3, channels=(16, 32, 64, 128), strides=(2, 2, 2, 1))
    rows, equal = [], []
    for repeat in range(args.repeats):
        loops = [("plain", lambda n: plain_loop(n, batches)), ("medlight", lambda n: medlight_loop(n, batches, patch))]
        trained_by = {}
        for name, run in loops[:: 1 if repeat % 2 == 0 else -1]:  # alternate the order: no warm-cache advantage
            times, trained_by[name] = run(copy.deepcopy(initial))
            rows.append({"repeat": repeat, "loop": name, "median_s": median(times[args.warmup :])})
        reference = trained_by["plain"].state_dict()
        equal.append(all(torch.equal(v, trained_by["medlight"].state_dict()[k]) for k, v in reference.items()))
    plain = median([r["median_s"] for r in rows if r["loop"] == "plain"])
    ours = median([r["median_s"] for r in rows if r["loop"] == "medlight"])
    print(header("Framework overhead per training step (3D Res-UNet, batch 4 x 32x48x32, AdamW, Dice+CE)"))
    print(table(rows, ["repeat", "loop", "median_s"]))
    print(
        f"\nmedian over repeats: plain {plain:.4f} s/step, medlight {ours:.4f} s/step, "
        f"ratio {ours / plain:.4f} ({(ours / plain - 1) * 100:+.2f}% per step); target <= +2%"
    )
    print(f"weights after {args.steps} steps bitwise equal in every repeat: {all(equal)}")


if __name__ == "__main__":
    main()
