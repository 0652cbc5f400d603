"""Resuming: a resumed run continues the very same batches and ends with the very same weights."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from medlight.data import SegmentationDataModule
from medlight.nets import ResUNet
from medlight.runs.checkpointing import AtomicCheckpointIO
from medlight.tasks import SegmentationTask
from tests.conftest import make_msd
from tests.integration.helpers import REPO, tiny_fit_args


class Recorder(Callback):
    def __init__(self) -> None:
        self.batches: list[tuple] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append((tuple(batch["case_id"]), round(float(batch["image"].sum()), 3)))


def train(dataset: Path, run_dir: Path, max_steps: int, ckpt_path: str | None = None) -> tuple[list, dict]:
    seed_everything(0)
    dm = SegmentationDataModule(
        str(dataset),
        split_file=str(dataset.parent / "splits.json"),
        num_folds=3,
        patch_size=(16, 16, 16),
        batch_size=2,
        cache="none",
    )
    model = SegmentationTask(ResUNet(3, 1, 3, channels=(4, 8), strides=(2,)))
    recorder = Recorder()
    trainer = Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        deterministic=True,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            recorder,
            ModelCheckpoint(dirpath=run_dir / "ckpt", save_last=True, save_top_k=0, every_n_train_steps=1),
        ],
    )
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return recorder.batches, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_msd(tmp_path_factory.mktemp("resume") / "data", n=12, shape=(20, 20, 16))


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory) -> tuple[list, dict]:
    return train(dataset, tmp_path_factory.mktemp("full"), max_steps=10)


@pytest.mark.parametrize("stop_after", [4, 6])  # inside an epoch (3 batches each), and at its end
def test_resumed_run_sees_the_same_batches_and_ends_with_the_same_weights(
    dataset, uninterrupted, tmp_path, stop_after
) -> None:
    full_batches, full_weights = uninterrupted
    assert len(full_batches) == 10 and len(set(full_batches)) > 3
    first, _ = train(dataset, tmp_path, max_steps=stop_after)
    second, weights = train(dataset, tmp_path, max_steps=10, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert first + second == full_batches
    for name, value in full_weights.items():
        assert torch.equal(value, weights[name]), name


def fit_command(data: Path, run_dir: Path) -> list[str]:
    """A fit of 60 steps with last.ckpt every 5 steps, the run the kill test interrupts."""
    return [
        sys.executable, "-m", "medlight",
        *tiny_fit_args(
            data, run_dir, "--trainer.max_epochs", "20", "--trainer.check_val_every_n_epoch", "10",
            "--trainer.deterministic", "true", "--checkpoint_every_n_steps", "5", "--test_after_fit", "false",
        ),
    ]  # fmt: skip


def train_rows(metrics_log: Path) -> list[tuple[str, str]]:
    rows = list(csv.DictReader(metrics_log.open()))
    return [(r["step"], r["train/loss"]) for r in rows if r.get("train/loss")]


@pytest.mark.slow
def test_a_run_killed_mid_training_resumes_and_ends_exactly_as_an_uninterrupted_one(tmp_path: Path) -> None:
    data = make_msd(tmp_path / "data", n=12, shape=(20, 20, 16))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full = subprocess.run(fit_command(data, tmp_path / "full"), cwd=REPO, env=env, capture_output=True, text=True)
    assert full.returncode == 0, full.stderr[-3000:]
    total = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert total == 60

    run = tmp_path / "killed"
    last = run / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        fit_command(data, run), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline, step = time.time() + 300, 0
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            step = torch.load(last, weights_only=True)["global_step"]  # written atomically: always whole
            if step >= 15:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert 15 <= step < total, f"killed at step {step}: not mid-training"

    resumed = subprocess.run(fit_command(data, run), cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stderr + resumed.stdout
    reference = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    weights = torch.load(last, weights_only=True)["state_dict"]
    assert reference.keys() == weights.keys()
    for name, value in reference.items():
        assert torch.equal(value, weights[name]), name
    # every step logged once, with the same loss as the uninterrupted run
    assert train_rows(run / "metrics.csv") == train_rows(tmp_path / "full" / "metrics.csv")
    assert not list(run.rglob(".*.tmp"))
