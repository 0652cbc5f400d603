"""RunTiming: parameters, training time per epoch (validation excluded), network time per test case."""

import json
import time
from pathlib import Path

import pandas as pd
import torch
from lightning.pytorch import Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from medlight.runs import RunTiming
from medlight.studies.report import cost_table
from medlight.tasks.base import MedlightTask


class Slow(nn.Module):
    """A linear layer that sleeps, so the measured times have a known lower bound."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.linear, self.seconds = nn.Linear(3, 2), seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return self.linear(x)


class Task(MedlightTask):
    def __init__(self) -> None:
        super().__init__()
        self.net = Slow(0.01)

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        time.sleep(0.2)  # slow validation must not count as training time

    def test_step(self, batch, batch_idx):
        self.net(batch[0])
        self.net(batch[0])  # two windows per case
        time.sleep(0.02)  # work outside the network: counted per case, not as inference

    def on_test_epoch_end(self) -> None:  # as every task does: its summary, written once at the end of test
        self.set_summary("test", {"cases": 3, "dice": 0.5})

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(n: int) -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(n, 3)), batch_size=1)


def test_timing_is_written_and_merged_into_the_test_summary(tmp_path: Path) -> None:
    timing = RunTiming()
    trainer = Trainer(
        default_root_dir=tmp_path, max_epochs=2, callbacks=[timing], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    task = Task()
    trainer.fit(task, loader(4), loader(2))
    trainer.test(task, loader(3))
    assert [e["batches"] for e in timing.epochs] == [4, 4]
    summary = json.loads((tmp_path / "metrics" / "test_summary.json").read_text())
    assert summary["cases"] == 3 and summary["dice"] == 0.5  # the task's numbers are kept
    assert summary["params"] == 3 * 2 + 2
    assert 0.04 <= summary["train_seconds_per_epoch"] < 0.04 + 0.3  # 4 x 10 ms, not the 0.4 s of validation
    assert summary["train_seconds_per_step"] >= 0.01
    assert 0.02 <= summary["inference_seconds_per_case"] < summary["test_seconds_per_case"]
    assert summary["test_seconds_per_case"] >= 0.04
    assert json.loads((tmp_path / "metrics" / "timing.json").read_text())["params"] == 8


def test_training_times_survive_a_resume() -> None:
    timing = RunTiming()
    timing.epochs = [{"seconds": 2.0, "batches": 4.0}]
    resumed = RunTiming()
    resumed.load_state_dict(timing.state_dict())
    assert resumed.summary(nn.Linear(1, 1))["train_seconds_per_epoch"] == 2.0


def test_partial_last_epoch_is_left_out_of_the_epoch_mean() -> None:
    timing = RunTiming()
    timing.epochs = [
        {"seconds": 4.0, "batches": 4.0},
        {"seconds": 6.0, "batches": 4.0},
        {"seconds": 1.0, "batches": 1.0},
    ]
    summary = timing.summary(nn.Linear(1, 1))
    assert summary["train_seconds_per_epoch"] == 5.0
    assert summary["train_seconds_per_step"] == 11.0 / 9.0
    assert summary["inference_seconds_per_case"] is None  # never tested


def test_cost_table_averages_runs_per_variant() -> None:
    runs = pd.DataFrame(
        {
            "variant": ["a", "a", "b"],
            "params": [2_000_000, 2_000_000, 500_000],
            "train_seconds_per_epoch": [10.0, 20.0, 3.0],
            "inference_seconds_per_case": [0.5, 0.7, 0.1],
        }
    )
    table = cost_table(runs, ["b", "a", "missing"])
    assert table["variant"].tolist() == ["b", "a"]
    assert table["params"].tolist() == ["0.50 M", "2.00 M"]
    assert table["train_seconds_per_epoch"].tolist() == [3.0, 15.0]
    assert table["inference_seconds_per_case"].tolist() == [0.1, 0.6]
    assert cost_table(
        runs.drop(columns=["params", "train_seconds_per_epoch", "inference_seconds_per_case"]), ["a"]
    ).empty


def test_readings_wait_for_a_cuda_device(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    timing = RunTiming()
    timing._now()
    assert calls == []  # on CPU nothing to wait for
    timing._device = torch.device("cuda", 0)
    timing._now()
    assert calls == [torch.device("cuda", 0)]
