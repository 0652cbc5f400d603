"""A classification plan for 2D images (a folder of class sub-folders, or a CSV): input size, batch, width,
augmentation, a decision threshold chosen on validation, and the number of steps from the measured step time.

nnU-Net configures no classifier; these rules are medlight's own, each stated in plan.md.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medlight.data.classification import ClassificationDataModule
from medlight.data.datalist import IMAGE_DIRS
from medlight.data.integrity import read_volume
from medlight.errors import DatasetError
from medlight.keys import Key
from medlight.losses.abn import AttentionLossSchedule, abn_loss
from medlight.nets import AttentionBranchNetwork
from medlight.planning import budget
from medlight.planning.rules import STEP_VOXELS, Choice
from medlight.planning.segmentation import _trainer, split_settings
from medlight.planning.write import write_plan

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SIZE_LIMITS = {"cpu": (64, 256), "gpu": (64, 512)}
WIDTH = {"cpu": 32, "gpu": 64}


def is_classification(root: Path) -> bool:
    """A CSV file, or a folder without dataset.json or image folder whose sub-folders (classes) hold images."""
    if root.suffix.lower() == ".csv":
        return True
    if not root.is_dir() or (root / "dataset.json").exists() or any((root / d).is_dir() for d in IMAGE_DIRS):
        return False
    classes = [p for p in root.iterdir() if p.is_dir() and any(_images(p))]
    return len(classes) >= 2


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))


def _files(root: Path) -> list[tuple[Path, str]]:
    if root.suffix.lower() == ".csv":
        with root.open(newline="") as f:
            return [(root.parent / r["path"], r["label"].strip()) for r in csv.DictReader(f)]
    return [(p, d.name) for d in sorted(root.iterdir()) if d.is_dir() for p in _images(d)]


def plan_classification(root: Path, budget_minutes: float, accelerator: str, out: Path) -> Path:
    files = _files(root)
    if not files:
        raise DatasetError(f"{root}: no images found")
    shapes, channels = [], []
    for path, _ in files:
        array = read_volume(path).array
        shapes.append(array.shape[:2])
        channels.append(array.shape[2] if array.ndim == 3 else 1)
    labels = [label for _, label in files]
    counts = {name: labels.count(name) for name in sorted(set(labels))}
    low, high = SIZE_LIMITS[accelerator]
    median: np.ndarray = np.median(np.array(shapes), axis=0)
    size = [int(min(high, max(low, 32 * round(s / 32)))) for s in median]
    batch = int(min(64, max(8, STEP_VOXELS[(accelerator, 2)] // math.prod(size))))
    width = WIDTH[accelerator]
    split = split_settings(len(files))
    balanced = min(counts.values()) < max(counts.values())
    choices = [
        Choice(
            "input_size",
            size,
            f"median image size {[int(s) for s in median]} rounded to the network's stride "
            f"32, within {low}-{high} ({accelerator})",
        ),
        Choice(
            "normalisation",
            "z-score per image and channel",
            "what the classification data module does (inside the organ mask when there is one)",
        ),
        Choice("batch_size", batch, f"{STEP_VOXELS[(accelerator, 2)]:,} pixels per step, 8-64 images"),
        Choice("width", width, f"ResNet-18 attention branch network, width {width} ({accelerator})"),
        Choice(
            "augmentation",
            {"flip_prob": 0.5, "flip_axis": 1, "scale_prob": 0.3, "noise_prob": 0.1},
            "left-right flips, intensity scaling and noise (SliceAugmentation offers no rotation or zoom)",
        ),
        Choice(
            "class_balance",
            {"images": counts, "balanced_sampling": balanced},
            "images per class; "
            + (
                "unequal, so training draws each image with probability 1 / its class's count (every class "
                "equally often): oversampling the minority to full balance, the remedy Buda et al. 2018 "
                "(Neural Networks 106:249-259) found best for CNNs; the threshold below is still chosen on "
                "validation"
                if balanced
                else "equal: plain shuffled epochs"
            ),
        ),
        Choice(
            "decision_threshold",
            "Youden's J on validation",
            "the patient threshold and the slice threshold maximising sensitivity + specificity - 1 on the "
            "validation fold, stored in the checkpoint and used at test (not 0.5)",
        ),
    ]
    source = {"csv": str(root.resolve())} if root.suffix.lower() == ".csv" else {"image_folder": str(root.resolve())}
    data_args: dict[str, Any] = {
        **source,
        "image_size": size,
        "split_file": str((out / "splits.json").resolve()),
        **{k: v for k, v in split.items()},
        "cross_validate": False,
        "batch_size": batch,
        "balance_classes": balanced,
        "augmentation": {"flip_prob": 0.5, "flip_axis": 1, "scale_prob": 0.3, "noise_prob": 0.1},
    }
    datamodule = ClassificationDataModule(
        **{k: v for k, v in data_args.items() if k != "augmentation"},
    )
    net_args: dict[str, Any] = {"in_channels": int(np.median(channels)), "num_classes": len(counts), "width": width}
    timing = _measure(datamodule, AttentionBranchNetwork(**net_args), accelerator)
    n_val = len(datamodule.stage_items("val"))
    n_test = len(datamodule.stage_items("test"))
    n_train = len(datamodule.items) - n_val - n_test
    plan = budget.schedule(budget_minutes * 60, timing, n_train, n_val, n_test)
    choices.append(Choice("max_steps", plan.max_steps, plan.reason))
    model = {
        "model": {
            "class_path": "medlight.tasks.ABNClassificationTask",
            "init_args": {
                "net": {"class_path": "medlight.nets.AttentionBranchNetwork", "init_args": net_args},
                "threshold_on_validation": True,
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.001, "weight_decay": 1.0e-4}},
                "scheduler": {"class_path": "medlight.tasks.PolyLR", "init_args": {"follow_max_time": True}},
            },
        }
    }
    facts = {
        "fingerprint": {
            "dataset": str(root),
            "images": len(files),
            "classes": counts,
            "median_size": [int(s) for s in median],
            "channels": int(np.median(channels)),
        },
        "timing": vars(timing),
        "estimate_s": plan.estimate_s,
    }
    data = {"data": {"class_path": "medlight.data.ClassificationDataModule", "init_args": data_args}}
    return write_plan(out, data, model, _trainer(accelerator, plan), choices, facts, budget_minutes, accelerator)


def _measure(data: ClassificationDataModule, net: torch.nn.Module, accelerator: str) -> budget.Timing:
    """Seconds per training step (loading included) and per evaluated image, on this machine."""
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    start = time.perf_counter()
    data.setup("fit")
    load_s = (time.perf_counter() - start) / max(1, len(data.items))
    net = net.to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    schedule = AttentionLossSchedule()
    times: list[float] = []
    batches = budget._forever(data.train_dataloader())
    for step in range(budget.WARMUP_STEPS + budget.MAX_TIMED_STEPS):
        start = time.perf_counter()
        batch = next(batches)
        image = batch[Key.IMAGE].to(device).as_subclass(torch.Tensor)
        att, per, att_map = net(image)
        terms = abn_loss(
            att,
            per,
            att_map,
            batch[Key.LABEL].to(device),
            schedule,
            None,
            batch[Key.MASK].to(device),
            batch["has_mask"].to(device),
        )
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        budget._sync(device)
        if step >= budget.WARMUP_STEPS:
            times.append(time.perf_counter() - start)
        if budget.timed_enough(times):
            break
    step_s = sorted(times)[len(times) // 2]
    per_image = step_s / 3 / max(1, data.batch_size)  # a forward pass costs about a third of a training step
    return budget.Timing(step_s, load_s, per_image, len(times))
