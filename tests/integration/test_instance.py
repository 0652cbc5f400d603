"""The instance segmentation stack through the real CLI, and the BraTS-derived example (skips without it)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from medlight.data.instance.datamodule import InstanceDataModule
from tests.conftest import SHARED_DATA
from tests.integration.helpers import REPO, run_cli
from tests.unit.data.test_instance_datamodule import make_instance_folder

MODEL = REPO / "configs" / "model" / "instance_unet_2d.yaml"
BRATS = REPO / "experiments" / "instance_brats" / "brats_instances.yaml"


def test_instance_fit_writes_per_case_metrics(tmp_path: Path) -> None:
    data = make_instance_folder(tmp_path / "cells", n=10)
    args = [
        "fit",
        "--config",
        str(MODEL),
        "--config",
        str(REPO / "configs" / "trainer" / "cpu.yaml"),
        "--data",
        "medlight.data.InstanceDataModule",
        "--data.dataset",
        str(data),
        "--data.patch_size",
        "[24, 24]",
        "--data.batch_size",
        "4",
        "--data.num_folds",
        "2",
        "--trainer.max_steps",
        "2",
        "--trainer.max_epochs",
        "1",
        "--trainer.check_val_every_n_epoch",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--tracking.wandb",
        "disabled",
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
    ]
    assert run_cli(args) == 0
    with (tmp_path / "run" / "metrics" / "test_per_case.csv").open() as f:
        rows = list(csv.DictReader(f))
    test_ids = json.loads((data / "instance_splits.json").read_text())["test"]
    assert [r["case_id"] for r in rows] == sorted(test_ids) and len(rows) == 2
    assert {"pq", "aji", "f1", "objects", "found"} <= set(rows[0])
    assert all(float(r["objects"]) == 2 for r in rows)  # two touching discs per image
    summary = json.loads((tmp_path / "run" / "metrics" / "test_summary.json").read_text())
    assert summary["cases"] == 2 and 0 <= summary["pq"] <= 1
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()  # chosen by val/pq, not val/dice
    assert (tmp_path / "run" / "predictions" / f"{rows[0]['case_id']}.png").is_file()


def test_watershed_tuned_on_validation_is_used_for_the_test(tmp_path: Path) -> None:
    data = make_instance_folder(tmp_path / "cells", n=10)
    grid = '{"threshold": [0.3, 0.6], "centre_threshold": [0.5, 0.8], "min_size": [1, 30]}'
    args = ["fit", "--config", str(MODEL), "--config", str(REPO / "configs" / "trainer" / "cpu.yaml"),
            "--data", "medlight.data.InstanceDataModule", "--data.dataset", str(data),
            "--data.patch_size", "[24, 24]", "--data.batch_size", "4", "--data.num_folds", "2",
            "--model.init_args.tune_watershed", grid, "--trainer.max_steps", "3", "--trainer.max_epochs", "1",
            "--trainer.enable_progress_bar", "false", "--tracking.wandb", "disabled",
            "--trainer.default_root_dir", str(tmp_path / "run")]  # fmt: skip
    assert run_cli(args) == 0
    with (tmp_path / "run" / "metrics" / "watershed_tuning.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 8 and {r["min_size"] for r in table} == {"1", "30"}
    assert all(int(r["slices"]) == len(json.loads((data / "instance_splits.json").read_text())["folds"][0])
               for r in table)  # fmt: skip
    best = max(table, key=lambda r: float(r["pq"]))  # the first of equals, like the task
    summary = json.loads((tmp_path / "run" / "metrics" / "test_summary.json").read_text())
    assert summary["watershed_threshold"] == float(best["threshold"])
    assert summary["watershed_centre_threshold"] == float(best["centre_threshold"])
    assert summary["watershed_min_size"] == int(best["min_size"])


def test_brats_enhancing_tumour_instances() -> None:
    if not (SHARED_DATA / "brats2015_subset").is_dir():
        pytest.skip("../shared/data/brats2015_subset is not present (it is not part of a clone)")
    init = yaml.safe_load(BRATS.read_text())["data"]["init_args"]
    init["dataset"] = str(SHARED_DATA / "brats2015_subset")
    init["split_file"] = str(REPO / init["split_file"])
    dm = InstanceDataModule(**init)
    dm.setup("fit")
    assert dm.spec.in_channels == 2
    counts = [len(np.unique(s.instances)) - 1 for s in dm.slices or []]
    assert min(counts) >= 1 and max(counts) >= 2  # only slices with objects; separable objects exist
    assert all(s.image.shape[0] == 2 and s.image.shape[1:] == s.instances.shape for s in dm.slices or [])
