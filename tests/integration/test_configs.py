"""Every config in configs/ runs: a couple of training steps and a test batch on the embedded data."""

from pathlib import Path

import pytest
import torch

from tests.integration.helpers import REPO, run_cli, run_subprocess

CONFIGS = REPO / "configs"
DEFAULTS = {"data": CONFIGS / "data" / "hippocampus_3d.yaml", "model": CONFIGS / "model" / "res_unet_3d.yaml",
            "trainer": CONFIGS / "trainer" / "cpu.yaml"}
QUICK = ["--trainer.max_steps", "2", "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1",
         "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false",
         "--trainer.check_val_every_n_epoch", "1", "--tracking.wandb", "disabled", "--data.init_args.cache", "none"]


def stack_for(config: Path) -> list[Path]:
    """The default stack with ``config`` in its slot; 2D models get the 2D data config."""
    kind = config.parent.name
    stack = dict(DEFAULTS, **{kind: config})
    if kind == "model" and config.stem.endswith("_2d"):
        stack["data"] = CONFIGS / "data" / "hippocampus_2d.yaml"
    if kind == "data" and "_2d" in config.stem:
        stack["model"] = CONFIGS / "model" / "res_unet_2d.yaml"
    return [stack["data"], stack["model"], stack["trainer"]]


ALL = sorted(p for kind in ("data", "model", "trainer") for p in (CONFIGS / kind).glob("*.yaml"))


@pytest.mark.parametrize("config", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_runs(config: Path, tmp_path: Path) -> None:
    args = ["fit"]
    for part in stack_for(config):
        args += ["--config", str(part)]
    args += [*QUICK, "--trainer.default_root_dir", str(tmp_path)]
    if "accelerator: gpu" in config.read_text() and not torch.cuda.is_available():
        args += ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true"]  # all else as configured
    if "strategy: ddp" in config.read_text():  # DDP relaunches its command: run the real CLI, not pytest
        result = run_subprocess(args)
        assert result.returncode == 0, result.stderr[-3000:]
    else:
        assert run_cli(args) == 0
    assert (tmp_path / "metrics" / "test_summary.json").is_file()


@pytest.mark.gpu
@pytest.mark.parametrize("config", [p for p in ALL if "accelerator: gpu" in p.read_text()], ids=lambda p: p.name)
def test_gpu_config_runs_on_a_gpu(config: Path, tmp_path: Path) -> None:
    args = ["fit"] + [a for part in stack_for(config) for a in ("--config", str(part))]
    assert run_cli([*args, *QUICK, "--trainer.default_root_dir", str(tmp_path)]) == 0
