"""The ABN classification stack through the real CLI: alpha per epoch, per-patient outputs, overlays, BraTS."""

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import SHARED_DATA
from tests.integration.helpers import REPO, run_cli
from tests.unit.data.test_classification_datamodule import make_case_folders

MODEL = REPO / "configs" / "model" / "abn_resnet18.yaml"
DYNAMIC = REPO / "configs" / "abn" / "dynamic.yaml"
CPU = REPO / "configs" / "trainer" / "cpu.yaml"
BRATS = REPO / "experiments" / "abn_loss_schedule" / "brats_hemispheres.yaml"
QUICK = [
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.num_sanity_val_steps",
    "0",
    "--tracking.wandb",
    "disabled",
]


def tiny_data_config(tmp_path: Path) -> Path:
    """The BraTS hemisphere config pointed at tiny synthetic case folders."""
    config = yaml.safe_load(BRATS.read_text())
    args = config["data"]["init_args"]
    args["volumes"].update(
        dataset=str(make_case_folders(tmp_path / "vols", n=6)), image_files=["flair.nii.gz", "t1c.nii.gz"],
        label_file="seg.nii.gz", mask_file="brain.nii.gz", min_positive_pixels=4, min_mask_pixels=1,
    )  # fmt: skip
    args.update(image_size=[32, 32], split_file=str(tmp_path / "splits.json"), batch_size=4)
    config["model"]["init_args"]["net"]["init_args"]["width"] = 8
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_dynamic_schedule_logs_alpha_and_writes_patient_outputs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["fit", "--config", str(CPU), "--config", str(MODEL), "--config", str(tiny_data_config(tmp_path))]
    args += ["--config", str(DYNAMIC), "--trainer.max_epochs", "4", "--trainer.limit_train_batches", "1"]
    args += ["--trainer.check_val_every_n_epoch", "1"]  # cpu.yaml validates every 10 epochs
    assert run_cli([*args, *QUICK, "--trainer.default_root_dir", str(run)]) == 0
    log = pd.read_csv(run / "metrics.csv")
    alpha = log.dropna(subset=["train/alpha"]).set_index("epoch")["train/alpha"]
    assert alpha.round(3).to_dict() == {0: 0.9, 1: 0.9, 2: 0.1, 3: 0.1}  # switch at half of 4 epochs
    assert {"train/l_att", "train/l_per", "train/l_map", "val/slice_auc"} <= set(log.columns)
    summary = json.loads((run / "metrics" / "test_summary.json").read_text())
    assert summary["cases"] == 4  # cross-validation: the test fold holds 2 of 6 patients = 4 hemispheres
    for key in ("slice_accuracy", "slice_sensitivity", "slice_specificity", "slice_auc", "patient_accuracy"):
        assert 0 <= summary[key] <= 1
    with (run / "metrics" / "test_per_case.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["case_id"][-1] for r in rows} == {"A", "B"}
    assert {r["label"] for r in rows} == {"no_tumour", "tumour"}
    assert (run / "attention" / "test_overlays.png").stat().st_size > 1000


def test_conventional_schedule_logs_no_alpha(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["fit", "--config", str(CPU), "--config", str(MODEL), "--config", str(tiny_data_config(tmp_path))]
    args += ["--trainer.max_steps", "2", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "1"]
    assert run_cli([*args, *QUICK, "--trainer.default_root_dir", str(run)]) == 0
    assert "train/alpha" not in pd.read_csv(run / "metrics.csv").columns
    assert (run / "metrics" / "test_per_case.csv").is_file()


@pytest.mark.slow
@pytest.mark.shared_data
def test_brats_hemisphere_config_runs(tmp_path: Path) -> None:
    if not (SHARED_DATA / "brats2015_subset").is_dir():
        pytest.skip("../shared/data/brats2015_subset is not present (it is not part of a clone)")
    args = ["fit", "--config", str(CPU), "--config", str(MODEL), "--config", str(BRATS), "--config", str(DYNAMIC)]
    args += ["--data.init_args.split_file", str(tmp_path / "splits.json"), "--trainer.max_steps", "2"]
    args += ["--trainer.limit_test_batches", "2", *QUICK]
    assert run_cli([*args, "--trainer.default_root_dir", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "metrics" / "test_summary.json").read_text())
    assert summary["slices"] == 64 and summary["cases"] >= 1


def test_threshold_chosen_on_validation_is_stored_and_used_at_test(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["fit", "--config", str(CPU), "--config", str(MODEL), "--config", str(tiny_data_config(tmp_path))]
    args += [
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "1",
        "--trainer.check_val_every_n_epoch",
        "1",
    ]
    args += ["--model.init_args.threshold_on_validation", "true"]
    assert run_cli([*args, *QUICK, "--trainer.default_root_dir", str(run)]) == 0
    log = pd.read_csv(run / "metrics.csv")
    chosen = log.dropna(subset=["val/threshold"])["val/threshold"]
    summary = json.loads((run / "metrics" / "test_summary.json").read_text())
    if len(chosen):  # a validation fold with both classes
        assert summary["patient_threshold"] == pytest.approx(float(chosen.iloc[-1]), abs=1e-5)
        assert "chosen_threshold" in torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    else:
        assert summary["patient_threshold"] is None
    slice_chosen = log.dropna(subset=["val/slice_threshold"])["val/slice_threshold"]
    assert len(slice_chosen)  # validation slices of both classes: a slice threshold is always chosen here
    assert any(summary["slice_threshold"] == pytest.approx(float(v), abs=1e-5) for v in slice_chosen)
    assert "chosen_slice_threshold" in torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
