from pathlib import Path

import pytest
import torch

from medlight.errors import NonFiniteError
from medlight.runs.checkpointing import AtomicCheckpointIO, nonfinite_entries


def test_writes_and_reads_back(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, tmp_path / "a" / "last.ckpt")
    assert torch.equal(io.load_checkpoint(tmp_path / "a" / "last.ckpt")["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["last.ckpt"]


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path: Path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # e.g. the job was killed while writing

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(io.load_checkpoint(path)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_non_finite_weights_are_never_written(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)
    with pytest.raises(NonFiniteError, match="net.w"):
        io.save_checkpoint({"state_dict": {"net.w": torch.tensor([1.0, float("nan")])}}, path)
    assert torch.equal(io.load_checkpoint(path)["state_dict"]["w"], torch.ones(2))
    assert nonfinite_entries({"a": torch.tensor([float("inf")]), "b": torch.ones(1), "n": torch.tensor([1])}) == ["a"]
