"""A NaN loss is skipped (weights untouched) or stops training; it never reaches a checkpoint."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from monai.losses import DiceCELoss

from medlight.data import SegmentationDataModule
from medlight.errors import NonFiniteError
from medlight.nets import ResUNet
from medlight.runs.checkpointing import AtomicCheckpointIO
from medlight.tasks import SegmentationTask
from tests.conftest import make_msd


class NaNAt(torch.nn.Module):
    """Dice+CE, but NaN on the chosen calls."""

    def __init__(self, bad_calls: set[int]) -> None:
        super().__init__()
        self.base = DiceCELoss(to_onehot_y=True, softmax=True)
        self.bad_calls, self.calls = bad_calls, 0

    def forward(self, logits, target):
        self.calls += 1
        loss = self.base(logits, target)
        return loss * float("nan") if self.calls in self.bad_calls else loss


class Snapshots(Callback):
    def __init__(self) -> None:
        self.changed: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.before = [p.detach().clone() for p in pl_module.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.changed.append(any(not torch.equal(a, b) for a, b in zip(self.before, pl_module.parameters())))


def fit(
    tmp_path: Path, loss: torch.nn.Module, policy: str, steps: int = 5, check_every: int | None = None
) -> Snapshots:
    seed_everything(0)
    data = make_msd(tmp_path / "data", n=9, shape=(16, 16, 16))
    dm = SegmentationDataModule(
        str(data), split_file=str(tmp_path / "s.json"), num_folds=2, patch_size=(16, 16, 16), batch_size=2, cache="none"
    )
    model = SegmentationTask(
        ResUNet(3, 1, 3, channels=(4, 8), strides=(2,)),
        loss=loss,
        nonfinite_loss=policy,
        max_nonfinite_steps=2,
        nonfinite_check_every=check_every,
    )
    snaps = Snapshots()
    trainer = Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            snaps,
            ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0, every_n_train_steps=1)
            if check_every is None
            else Callback(),  # the lazy check's own reaction is tested, not the checkpoint writer's refusal
        ],
    )
    trainer.fit(model, dm)
    return snaps


def test_skip_leaves_the_weights_untouched_and_training_goes_on(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="non-finite loss at step"):
        snaps = fit(tmp_path, NaNAt({2, 4}), "skip")
    assert snaps.changed == [True, False, True, False, True]
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_stop_raises_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteError, match="step 3"):
        fit(tmp_path, NaNAt({4}), "stop")
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["global_step"] == 3


def test_too_many_skips_in_a_row_stop(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteError, match="3 consecutive"), pytest.warns(UserWarning):
        fit(tmp_path, NaNAt({2, 3, 4}), "skip")


def test_lazy_check_skips_the_step_it_reads_exactly(tmp_path: Path) -> None:
    """GPU default: the finiteness stays on the device and is read every N steps (here 3, on CPU)."""
    with pytest.warns(UserWarning, match="non-finite loss at step 2"):
        snaps = fit(tmp_path, NaNAt({3}), "skip", check_every=3)
    assert snaps.changed == [True, True, False, True, True]


def test_lazy_check_stops_when_an_unread_step_poisoned_the_weights(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteError, match="1 non-finite loss.* before step 1.*hold NaN"):
        fit(tmp_path, NaNAt({1}), "skip", check_every=2)
