"""A segmentation plan: fingerprint -> rules -> measured step time -> config fragments and plan.md."""

from __future__ import annotations

import importlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from medlight.data.segmentation import Augmentation, Preprocessing, SegmentationDataModule
from medlight.planning import budget, rules
from medlight.planning.fingerprint import Fingerprint
from medlight.planning.rules import Choice, Geometry
from medlight.planning.write import write_plan

TEST_FRACTION = 0.2  # held out for the test
FOLDS = 5  # nnU-Net: 5-fold cross-validation; medlight trains fold 0 and tests on the held-out cases


def split_settings(n_cases: int) -> dict[str, Any]:
    """5 folds (fewer when the data are too few: at least one validation case per fold), 20% held out."""
    n_test = math.ceil(TEST_FRACTION * n_cases)
    return {
        "num_folds": max(2, min(FOLDS, n_cases - n_test)),
        "fold": 0,
        "test_fraction": TEST_FRACTION,
        "split_seed": 0,
    }


def plan_segmentation(fp: Fingerprint, budget_minutes: float, accelerator: str, out: Path) -> list[Path]:
    """Write one plan folder per configuration (``out`` for the first, ``out/<mode>`` for an alternative)."""
    folders = []
    split_file = out / "splits.json"  # one split for every configuration, so they compare on the same cases
    for i, geometry in enumerate(rules.geometries(fp)):
        folder = out if i == 0 else out / geometry.mode
        folders.append(plan_geometry(fp, geometry, budget_minutes, accelerator, folder, split_file))
    return folders


def plan_geometry(
    fp: Fingerprint, geometry: Geometry, budget_minutes: float, accelerator: str, folder: Path, split_file: Path
) -> Path:
    choices: list[Choice] = list(geometry.choices)
    norm = rules.normalisation(fp)
    anisotropic = fp.spatial_dims == 3 and fp.anisotropy > rules.ANISOTROPY_THRESHOLD
    aug = rules.augmentation(geometry.mode, anisotropic)
    n_cases = len(fp.cases)
    split = split_settings(n_cases)
    train_cases = max(1, round(n_cases * (1 - TEST_FRACTION) * (1 - 1 / split["num_folds"])))
    voxels = float(np.sum(np.prod(fp.shapes, axis=1)))
    patch, batch, samples, patch_choice = rules.patch_and_batch(
        geometry.median_shape, geometry.net_spacing, accelerator, voxels, train_cases
    )
    kernels, strides = rules.topology([float(p) for p in patch], geometry.net_spacing)
    width = rules.filters(len(strides), len(patch), accelerator)
    post = rules.postprocessing_candidates(fp, geometry.spacing)
    label_map = rules.label_map(fp)
    topology = rules.network(kernels, strides, accelerator)
    oversampling = Choice(
        "foreground_oversampling",
        rules.FOREGROUND_OVERSAMPLING,
        "a third of the patches centred on foreground (nnU-Net: 33%)",
    )
    choices += [norm, patch_choice, topology, width, oversampling, aug, rules.class_balance(fp), post]

    preprocessing: dict[str, Any] = {"spacing": geometry.spacing, **norm.value}
    if label_map:
        preprocessing["label_map"] = label_map
    data_args: dict[str, Any] = {
        "dataset": str(fp.root.resolve()),
        "split_file": str(split_file.resolve()),
        **split,
        "patch_size": patch,
        "slice_axis": geometry.slice_axis,
        "batch_size": batch,
        "samples_per_volume": samples,
        "pos_fraction": rules.FOREGROUND_OVERSAMPLING,
        "preprocessing": preprocessing,
        "augmentation": aug.value,
        "num_workers": 0 if accelerator == "cpu" else min(8, max(1, (os.cpu_count() or 2) // 2)),
    }
    if not fp.labels_declared:  # labels are declared as the values after label_map (what the check sees)
        mapping = label_map or {}
        data_args["labels"] = {mapping.get(int(k), int(k)): v for k, v in fp.labels.items()}
    net_class, net_args = network_args(topology.value, width.value, len(patch), fp.in_channels, len(fp.labels))
    datamodule = SegmentationDataModule(
        **{k: v for k, v in data_args.items() if k not in ("preprocessing", "augmentation")},
        preprocessing=Preprocessing(**_tuples(preprocessing)),
        augmentation=Augmentation(**aug.value),
    )
    timing = budget.measure(datamodule, build_network(net_class, net_args), accelerator)
    splits = datamodule.splits
    assert splits is not None
    n_train, n_val = len(splits.train_ids(0)), len(splits.val_ids(0))
    plan = budget.schedule(budget_minutes * 60, timing, n_train, n_val, len(splits.test))
    choices.append(Choice("max_steps", plan.max_steps, plan.reason))
    mirror = list(range(len(patch))) if accelerator == "gpu" else []
    choices.append(
        Choice(
            "test_time_mirroring",
            mirror,
            "nnU-Net mirrors along every axis at test; on CPU off (8x the inference time in 3D; a departure)",
        )
    )
    model = {
        "model": {
            "class_path": "medlight.tasks.SegmentationTask",
            "init_args": {
                "net": {"class_path": net_class, "init_args": net_args},
                "loss": {"class_path": "monai.losses.DiceCELoss", "init_args": {"to_onehot_y": True, "softmax": True}},
                "inference": {"overlap": 0.5, "mirror_axes": mirror},
                "postprocessing_candidates": post.value[1:],
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.002, "weight_decay": 3.0e-5}},
                "scheduler": {"class_path": "medlight.tasks.PolyLR", "init_args": {"follow_max_time": True}},
            },
        }
    }
    choices.append(
        Choice(
            "optimizer",
            "AdamW lr 2e-3, poly decay",
            "nnU-Net: SGD (lr 0.01, Nesterov momentum 0.99) "
            "with poly decay over 250,000 steps; for a few hundred steps Adam converges faster "
            "(departure)",
        )
    )
    trainer = _trainer(accelerator, plan)
    facts = {
        "fingerprint": fp.summary(),
        "timing": vars(timing),
        "estimate_s": plan.estimate_s,
        "splits": {"train": n_train, "val": n_val, "test": len(splits.test)},
    }
    return write_plan(
        folder,
        {"data": {"class_path": "medlight.data.SegmentationDataModule", "init_args": data_args}},
        model,
        trainer,
        choices,
        facts,
        budget_minutes,
        accelerator,
    )


def network_args(
    topology: dict[str, Any], widths: list[int], dims: int, in_channels: int, out_channels: int
) -> tuple[str, dict[str, Any]]:
    """The network's class path and init args from the planned topology and widths."""
    args = {k: v for k, v in topology.items() if k != "class_path"}
    common = {"spatial_dims": dims, "in_channels": in_channels, "out_channels": out_channels}
    if topology["class_path"] == "monai.networks.nets.DynUNet":
        dyn = {"filters": widths, "norm_name": "instance", "res_block": False}
        return topology["class_path"], {**common, **args, **dyn}
    return topology["class_path"], {**common, "channels": widths, **args}


def build_network(class_path: str, args: dict[str, Any]) -> nn.Module:
    module, name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**args)


def _trainer(accelerator: str, plan: budget.Schedule) -> dict[str, Any]:
    trainer: dict[str, Any] = {
        "accelerator": accelerator,
        "devices": 1,
        "max_steps": plan.max_steps,
        "max_time": lightning_duration(plan.fit_s),
        "max_epochs": -1,
        "val_check_interval": plan.val_check_interval,
        "check_val_every_n_epoch": None,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": max(1, min(50, plan.max_steps // 20)),
    }
    if accelerator == "cpu":
        trainer["deterministic"] = True
    else:
        trainer["precision"] = "16-mixed"  # nnU-Net trains with mixed precision
    return {"trainer": trainer, "checkpoint_every_n_steps": max(1, math.ceil(plan.max_steps / 4))}


def lightning_duration(seconds: float) -> str:
    """Lightning's "DD:HH:MM:SS" (at least one second)."""
    total = max(1, int(seconds))
    return f"{total // 86400:02d}:{total // 3600 % 24:02d}:{total // 60 % 60:02d}:{total % 60:02d}"


def _tuples(prep: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in prep.items()}
