"""A run's dashboards, read back from their files: config keys, group, tags, learning rate, images, per-case table."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from medlight.cli import main
from medlight.runs.layout import RunLayout
from tests.conftest import make_msd
from tests.integration.dashboards import read_tensorboard, read_wandb
from tests.integration.helpers import TINY_3D, run_cli, tiny_fit_args
from tests.integration.test_abn import CPU, MODEL, QUICK, tiny_data_config
from tests.integration.test_hieradapt import _fit


@pytest.fixture(autouse=True)
def no_account(monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_a_run_shows_what_it_is_on_wandb_and_tensorboard(tmp_path: Path) -> None:
    data = make_msd(tmp_path / "Task04_Tiny", n=8, shape=(20, 20, 16))
    run = tmp_path / "run"
    flags = ["--tracking.wandb", "offline", "--tracking.tensorboard", "true", "--seed_everything", "3"]
    assert run_cli(tiny_fit_args(data, run, *flags, "--tracking.checkpoint_artifact", "true")) == 0

    wandb_run = read_wandb(run)
    config = wandb_run.config
    assert config["model"] == "SegmentationTask" and config["model.net"] == "ResUNet"
    assert config["model.optimizer"] == "Adam" and config["model.optimizer.lr"] == 0.01
    assert config["data.patch_size"] == [16, 16, 16] and config["data.fold"] == 0 and config["seed_everything"] == 3
    assert config["params.total"] == config["params.trainable"] > 1000
    manifest = json.loads(RunLayout(run).manifest.read_text())
    assert config["git.commit"] == manifest["git"]["commit"] and config["split_sha256"] == manifest["split_sha256"]
    assert config["packages.torch"] == torch.__version__
    assert wandb_run.group == "Task04_Tiny" and {"SegmentationTask", "ResUNet"} <= set(wandb_run.tags)
    assert {"lr-Adam", "val/overlays", "train/loss", "val/dice", "test/dice"} <= wandb_run.history_keys
    assert len(wandb_run.media("images")) == 2  # one picture per validation (two epochs)
    assert ("model", f"model-{wandb_run.folder.name.rsplit('-', 1)[-1]}") in wandb_run.artifacts  # best checkpoint
    (table,) = wandb_run.media("table")
    content = json.loads(table.read_text())
    assert content["columns"][0] == "case_id" and len(content["data"]) == 2  # the two held-out cases

    board = read_tensorboard(run)
    assert board.hparams["model.net"] == "ResUNet" and board.hparams["model.optimizer.lr"] == pytest.approx(0.01)
    assert board.hparams["data.patch_size"] == "[16, 16, 16]" and board.hparams["seed_everything"] == 3
    assert {"lr-Adam", "val/dice", "test/dice"} <= board.scalars and board.images == {"val/overlays"}
    test_cases = [line.split(",")[0] for line in RunLayout(run).per_case("test").read_text().splitlines()[1:]]
    assert all(f"| {case} |" in board.texts["test/per_case"] for case in test_cases)
    assert "val/dice" in RunLayout(run).metrics_log.read_text()  # the CSV log stays, for the study curves


def test_a_study_run_carries_study_variant_and_grid_point(tmp_path: Path) -> None:
    data = make_msd(tmp_path / "data", n=8, shape=(20, 20, 16))
    folder = tmp_path / "tiny"
    folder.mkdir()
    study = {
        "name": "tiny",
        "configs": [TINY_3D],
        "variants": {"res": []},
        "grid": {"fold": {"keys": ["data.init_args.fold"], "values": [1]}},
        "budgets": {
            "smoke": {
                "trainer.max_epochs": 1,
                "tracking.wandb": "offline",
                "data.init_args.dataset": str(data),
                "data.init_args.split_file": str(tmp_path / "splits.json"),
            }
        },
    }
    (folder / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    assert main(["study", "run", str(folder), "--runs-root", str(tmp_path / "runs")]) == 0
    wandb_run = read_wandb(tmp_path / "runs" / "tiny" / "smoke" / "res" / "fold1")
    config = wandb_run.config
    assert (config["study"], config["budget"], config["variant"], config["grid.fold"]) == ("tiny", "smoke", "res", 1)
    assert config["data.fold"] == 1 and config["model.net"] == "ResUNet"
    assert wandb_run.group == "tiny/smoke"
    assert {"study:tiny", "budget:smoke", "variant:res", "fold:1", "ResUNet"} <= set(wandb_run.tags)


def test_classification_logs_attention_overlays_and_the_patient_table(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["fit", "--config", str(CPU), "--config", str(MODEL), "--config", str(tiny_data_config(tmp_path))]
    args += [
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "1",
        "--trainer.check_val_every_n_epoch",
        "1",
    ]
    args += [*QUICK, "--tracking.tensorboard", "true", "--trainer.default_root_dir", str(run)]
    assert run_cli(args) == 0
    board = read_tensorboard(run)
    assert board.hparams["model"] == "ABNClassificationTask"
    assert {"val/attention_overlays", "test/attention_overlays"} <= board.images
    assert "| tumour |" in board.texts["test/per_case"] or "| no_tumour |" in board.texts["test/per_case"]


def test_reconstruction_logs_zero_filled_output_target_and_error(tmp_path: Path) -> None:
    one_epoch = ("--trainer.max_steps", "-1", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1")
    _fit(tmp_path / "run", tmp_path / "sim", extra=(*one_epoch, "--tracking.tensorboard", "true"))
    board = read_tensorboard(tmp_path / "run")
    assert board.hparams["model"] == "ReconstructionTask" and "val/reconstructions" in board.images
    assert "| psnr |" in board.texts["test/per_case"].splitlines()[0]
