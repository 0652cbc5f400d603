"""The HierAdaptMR workflows through the real CLI on a tiny simulation: train, then adapt with a frozen backbone."""

import json
from pathlib import Path

import pytest
import torch

from tests.integration.helpers import REPO, run_cli

CONFIGS = REPO / "configs"
TINY = [
    "--data.init_args.simulation.size", "32",
    "--data.init_args.simulation.volumes_per_center", "3",
    "--data.init_args.simulation.slices_per_volume", "2",
    "--data.init_args.num_folds", "2",
    "--model.init_args.net.init_args.num_cascades", "1",
    "--model.init_args.net.init_args.features", "[4, 4, 8, 8, 8, 4]",
    "--model.init_args.net.init_args.sens_features", "[2, 2, 4, 4, 4, 2]",
    "--trainer.max_steps", "2", "--trainer.max_epochs", "-1",
    "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
    "--trainer.check_val_every_n_epoch", "1", "--trainer.enable_progress_bar", "false",
    "--tracking.wandb", "disabled",
]  # fmt: skip


def _fit(run_dir: Path, sim_dir: Path, *configs: str, extra: tuple[str, ...] = ()) -> dict:
    args = ["fit", "--config", str(CONFIGS / "data" / "kspace_sim.yaml")]
    args += ["--config", str(CONFIGS / "model" / "hieradapt_varnet.yaml")]
    for config in configs:
        args += ["--config", str(CONFIGS / config)]
    args += ["--config", str(CONFIGS / "trainer" / "cpu.yaml"), *TINY, *extra]
    args += ["--data.init_args.simulation.out_dir", str(sim_dir), "--trainer.default_root_dir", str(run_dir)]
    assert run_cli(args) == 0
    return json.loads((run_dir / "metrics" / "test_summary.json").read_text())


@pytest.mark.slow
def test_train_then_adapt_to_a_new_center_with_a_frozen_backbone(tmp_path: Path) -> None:
    source = _fit(tmp_path / "source", tmp_path / "sim")
    assert source["trainable_share"] == 1.0 and 0 < source["adapter_share"] < 0.5
    assert {"psnr_D", "ssim_D", "nmse_D"} <= set(source)  # tested zero-shot on the held-out center
    start = tmp_path / "source" / "checkpoints" / "last.ckpt"
    adapted = _fit(
        tmp_path / "adapt",
        tmp_path / "sim",
        "hieradapt/adapt.yaml",
        extra=("--model.init_args.init_from", str(start), "--trainer.check_val_every_n_epoch", "1"),
    )
    assert 0 < adapted["trainable_share"] == adapted["center_adapter_share"] < 0.1
    before = torch.load(start, weights_only=True)["state_dict"]
    after = torch.load(tmp_path / "adapt" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert set(after) - set(before) and all(".center.D." in k for k in set(after) - set(before))  # D is new
    assert all(torch.equal(before[k], after[k]) for k in before)  # backbone and every other adapter unchanged
    d_keys = [k for k in after if ".center.D." in k and k.endswith("up.weight")]
    universal = [k.replace(".center.D.", ".universal.") for k in d_keys]
    assert any(not torch.equal(after[k], before[u]) for k, u in zip(d_keys, universal))  # D trained from universal


def test_a_parameter_free_reconstruction_fits_for_one_validation_only(tmp_path: Path) -> None:
    args = ["fit", "--config", str(CONFIGS / "data" / "kspace_sim.yaml")]
    args += ["--config", str(CONFIGS / "model" / "zero_filled.yaml"), "--config", str(CONFIGS / "trainer" / "cpu.yaml")]
    pairs = zip(TINY[::2], TINY[1::2])  # the net's settings do not apply to zero-filled
    args += [a for flag, value in pairs if not flag.startswith("--model.") for a in (flag, value)]
    args += ["--trainer.limit_train_batches", "2"]
    args += ["--trainer.max_steps", "40", "--trainer.log_every_n_steps", "1"]  # 20 epochs if nothing stopped it
    args += ["--data.init_args.simulation.out_dir", str(tmp_path / "sim"), "--trainer.default_root_dir", str(tmp_path)]
    assert run_cli(args) == 0
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("val/ssim")
    assert sum(1 for r in rows[1:] if r.split(",")[column]) == 1  # nothing trains: the fit ends after it
