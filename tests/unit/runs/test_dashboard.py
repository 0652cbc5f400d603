import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from medlight.runs.dashboard import (
    close_dashboards,
    dashboard_config,
    flatten_config,
    identify,
    log_image,
    log_table,
    manifest_facts,
    markdown_table,
)
from medlight.runs.tracking import Tracking, build_loggers
from tests.integration.dashboards import read_tensorboard, read_wandb

RESOLVED = {
    "seed_everything": 3,
    "model": {
        "class_path": "medlight.tasks.SegmentationTask",
        "init_args": {
            "net": {"class_path": "medlight.nets.ResUNet", "init_args": {"channels": [4, 8]}},
            "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
        },
    },
    "data": {
        "class_path": "medlight.data.SegmentationDataModule",
        "init_args": {"dataset": "/data/Task04_Hippocampus", "patch_size": [16, 16, 16], "fold": 1},
    },
    "trainer": {"max_epochs": 2, "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint"}]},
    "tracking": {"wandb": "offline"},
}


def test_the_resolved_config_becomes_readable_dotted_keys() -> None:
    flat = flatten_config(RESOLVED)
    assert flat["model"] == "SegmentationTask" and flat["model.net"] == "ResUNet"
    assert flat["model.net.channels"] == [4, 8] and flat["model.optimizer"] == "Adam"
    assert flat["model.optimizer.lr"] == 0.01 and flat["data.patch_size"] == [16, 16, 16]
    assert flat["data.fold"] == 1 and flat["seed_everything"] == 3
    assert flat["trainer.callbacks"] == ["ModelCheckpoint"]
    assert not any("class_path" in k or "init_args" in k for k in flat)


def test_group_and_tags_outside_and_inside_a_study() -> None:
    plain = dashboard_config(RESOLVED, Tracking())
    assert "tracking.wandb" not in plain
    alone = identify(Tracking(tags=["mine"]), plain)
    assert alone.group == "Task04_Hippocampus" and alone.tags == ["SegmentationTask", "ResUNet", "mine"]
    tracking = Tracking(group="s/cpu", study="s", budget="cpu", variant="res", point={"fold": 1, "seed": 0})
    flat = dashboard_config(RESOLVED, tracking)
    assert flat["study"] == "s" and flat["budget"] == "cpu" and flat["variant"] == "res" and flat["grid.fold"] == 1
    study = identify(tracking, flat)
    assert study.group == "s/cpu"
    assert {"study:s", "budget:cpu", "variant:res", "fold:1", "seed:0", "ResUNet"} <= set(study.tags)


def test_manifest_facts_are_flat_and_leave_out_the_config() -> None:
    manifest = {
        "git": {"commit": "abc", "dirty": False},
        "packages": {"torch": "2.5"},
        "split_sha256": "f00",
        "labeled_subset_sha256": "ba4",
        "config": RESOLVED,
        "machine": {"hostname": "x"},
    }
    facts = manifest_facts(manifest)
    assert facts == {
        "git.commit": "abc",
        "git.dirty": False,
        "packages.torch": "2.5",
        "split_sha256": "f00",
        "labeled_subset_sha256": "ba4",
    }


def test_images_and_tables_reach_wandb_and_tensorboard_and_skip_csv(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    loggers = build_loggers(tmp_path, Tracking(wandb="offline", tensorboard=True, project="tests"))
    assert [type(x).__name__ for x in loggers] == ["ResumableCSVLogger", "WandbLogger", "MergingTensorBoardLogger"]
    for logger in loggers:
        logger.log_hyperparams({"model.net": "UNet", "data.patch_size": [8, 8]})
        logger.log_hyperparams({"save_predictions": True})  # a later call adds to the earlier keys
    image = np.zeros((12, 16, 3), np.uint8)
    image[:, :8, 0] = 255
    log_image(loggers, "val/overlays", image, step=1)
    log_table(loggers, "test/per_case", [{"case_id": "a", "dice": np.float32(0.5)}, {"case_id": "b", "dice": 0.7}])
    for logger in loggers:
        logger.finalize("success")
    close_dashboards(loggers)
    wandb_run = read_wandb(tmp_path)
    assert wandb_run.config["model.net"] == "UNet" and wandb_run.config["save_predictions"] is True
    assert len(wandb_run.media("images")) == 1
    (table,) = wandb_run.media("table")
    assert '"case_id"' in table.read_text() and '"b"' in table.read_text()
    board = read_tensorboard(tmp_path)
    assert board.hparams["model.net"] == "UNet" and board.hparams["save_predictions"] == 1  # a bool is a number there
    assert board.images == {"val/overlays"}
    assert "| a | 0.5 |" in board.texts["test/per_case"]
    assert not list(tmp_path.glob("*.png"))  # the CSV logger took nothing


def test_markdown_table() -> None:
    assert markdown_table(["a", "b"], [["x", 0.123456]]) == "| a | b |\n|---|---|\n| x | 0.1235 |"


@pytest.mark.parametrize("key", [None, "x" * 40], ids=["no-account", "account-but-no-network"])
def test_online_without_network_falls_back_to_offline_with_one_line(tmp_path: Path, monkeypatch, key) -> None:
    if key is None:
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
    else:
        monkeypatch.setenv("WANDB_API_KEY", key)
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loggers = build_loggers(tmp_path, Tracking(wandb="online", project="tests"))
    assert time.monotonic() - start < 40
    messages = [str(w.message) for w in caught if "wandb" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0] and "logging offline instead" in messages[0]
    assert type(loggers[1]).__name__ == "WandbLogger"
    loggers[1].log_metrics({"val/dice": 0.5}, step=0)
    close_dashboards(loggers)
    assert "val/dice" in read_wandb(tmp_path).history_keys  # the record is kept offline
