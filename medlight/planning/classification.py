"""A classification plan for 2D images (a folder of class sub-folders, or a CSV): input size, batch, width,
augmentation, a decision threshold chosen on validation, and the number of steps from the measured step time.

nnU-Net configures no classifier; these rules are medlight's own, each stated in plan.md.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medlight.data.classification import ClassificationDataModule
from medlight.data.classification.slices import VolumeSlices
from medlight.data.datalist import IMAGE_DIRS, discover
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


@dataclass
class Source:
    """What a classification plan reads: the data module's source arguments and what sizes the plan."""

    data_args: dict[str, Any]
    shapes: list[tuple[int, int]]  # (H, W) per image; per volume for slices of volumes
    channels: int  # 0: known once the slices are read
    counts: dict[str, int] | None  # images per class; None: known once the slices are labelled
    units: int  # patients (or volumes) the folds split
    rule: str  # how images and labels are found, for plan.md


def image_source(root: Path) -> Source:
    """A folder of class sub-folders, or a CSV, of 2D images."""
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
    args = {"csv": str(root.resolve())} if root.suffix.lower() == ".csv" else {"image_folder": str(root.resolve())}
    rule = "a CSV of images and labels" if "csv" in args else "one sub-folder of images per class"
    return Source(args, shapes, int(np.median(channels)), counts, len(files), rule)


def slice_source(root: Path, axis: int, positive_labels: list[int], labels: dict[int, str] | None = None) -> Source:
    """The 2D slices across ``axis`` of a segmentation data set's volumes, positive when they hold a label in
    ``positive_labels`` (empty: any foreground)."""
    cases = [c for c in discover(root, labels).cases if c.label is not None]
    if not cases:
        raise DatasetError(f"{root}: no labelled volumes to take slices from")
    shapes = []
    for case in cases:
        shape = read_volume(case.label).array.shape  # type: ignore[arg-type]
        if len(shape) != 3 or not 0 <= axis < 3:
            raise DatasetError(f"{case.label}: --slices {axis} needs 3D volumes, found shape {shape}")
        shapes.append(tuple(int(n) for i, n in enumerate(shape) if i != axis))
    spec = {"dataset": str(root.resolve()), "axis": axis, "positive_labels": positive_labels}
    which = f"label {positive_labels}" if positive_labels else "any foreground label"
    rule = f"slices across axis {axis} of {len(cases)} volumes, positive when they hold {which}"
    return Source({"volumes": spec}, shapes, 0, None, len(cases), rule)  # type: ignore[arg-type]


def plan_classification(source: Source, budget_minutes: float, accelerator: str, out: Path) -> Path:
    low, high = SIZE_LIMITS[accelerator]
    median: np.ndarray = np.median(np.array(source.shapes), axis=0)
    size = [int(min(high, max(low, 32 * round(s / 32)))) for s in median]
    batch = int(min(64, max(8, STEP_VOXELS[(accelerator, 2)] // math.prod(size))))
    width = WIDTH[accelerator]
    split = split_settings(source.units)
    augmentation = {"flip_prob": 0.5, "flip_axis": 1, "scale_prob": 0.3, "noise_prob": 0.1}
    data_args: dict[str, Any] = {
        **source.data_args,
        "image_size": size,
        "split_file": str((out / "splits.json").resolve()),
        **split,
        "cross_validate": False,
        "batch_size": batch,
    }
    volumes = {"volumes": VolumeSlices(**data_args["volumes"])} if "volumes" in data_args else {}
    datamodule = ClassificationDataModule(**{**data_args, **volumes})
    counts, channels = source.counts, source.channels
    if counts is None:  # slices: labelled by the rule as they are read
        datamodule.setup("fit")
        labels = [datamodule.class_names[it["label"]] for it in datamodule.items]
        counts = {name: labels.count(name) for name in datamodule.class_names}
        channels = int(datamodule.items[0]["image"].shape[0])
    if min(counts.values()) == 0:
        raise DatasetError(f"{source.rule}: no image of class {min(counts, key=counts.__getitem__)!r}")
    balanced = min(counts.values()) < max(counts.values())
    datamodule.balance_classes = data_args["balance_classes"] = balanced
    data_args["augmentation"] = augmentation
    choices = [
        Choice(
            "input_size",
            size,
            f"median image size {[int(s) for s in median]} rounded to the network's stride "
            f"32, within {low}-{high} ({accelerator})",
        ),
        Choice(
            "normalisation",
            "z-score per image and channel" + (" (per volume, for slices of volumes)" if volumes else ""),
            "what the classification data module does (inside the organ mask when there is one)",
        ),
        Choice("batch_size", batch, f"{STEP_VOXELS[(accelerator, 2)]:,} pixels per step, 8-64 images"),
        Choice("width", width, f"ResNet-18 attention branch network, width {width} ({accelerator})"),
        Choice(
            "augmentation",
            augmentation,
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
    net_args: dict[str, Any] = {"in_channels": channels, "num_classes": len(counts), "width": width}
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
            "source": source.rule,
            **source.data_args,
            "images": sum(counts.values()),
            "classes": counts,
            "median_size": [int(s) for s in median],
            "channels": channels,
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
