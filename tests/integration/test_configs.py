"""Every config in configs/ runs: a couple of training steps, a validation and a test batch.

A config runs inside the default segmentation stack (hippocampus 3D data, 3D Res-UNet, CPU trainer), taking
its own slot (data/, model/, trainer/) or stacking on top (other folders, e.g. loss/). A config that belongs
to another kind of work names its companions in a comment line::

    # run-with: configs/data/other.yaml configs/model/other.yaml

and then runs with those (plus the CPU trainer unless it names a trainer).
"""

import re
from pathlib import Path

import pytest
import torch

from tests.integration.helpers import REPO, run_cli, run_subprocess

CONFIGS = REPO / "configs"
DEFAULTS = {
    "data": CONFIGS / "data" / "hippocampus_3d.yaml",
    "model": CONFIGS / "model" / "res_unet_3d.yaml",
    "trainer": CONFIGS / "trainer" / "cpu.yaml",
}
QUICK = [
    "--trainer.max_steps",
    "2",
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_val_batches",  # 2, not 1: the CLI reads "1" as 1.0, which Lightning takes for 100%
    "2",
    "--trainer.limit_test_batches",
    "2",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.check_val_every_n_epoch",
    "1",
    "--trainer.num_sanity_val_steps",
    "0",
    "--tracking.wandb",
    "disabled",
]


def stack_for(config: Path) -> list[Path]:
    """The configs to run ``config`` with, in stacking order."""
    declared = re.search(r"^# run-with:(.*)$", config.read_text(), flags=re.MULTILINE)
    if declared:
        companions = [REPO / p for p in declared.group(1).split()]
        if not any(p.parent.name == "trainer" for p in [*companions, config]):
            companions.append(DEFAULTS["trainer"])
        return [*companions, config]
    kind = config.parent.name
    if kind not in DEFAULTS:  # fragments such as loss/ stack on top of the defaults
        return [*DEFAULTS.values(), config]
    stack = dict(DEFAULTS, **{kind: config})
    if kind == "model" and config.stem.endswith("_2d"):
        stack["data"] = CONFIGS / "data" / "hippocampus_2d.yaml"
    if kind == "data" and "_2d" in config.stem:
        stack["model"] = CONFIGS / "model" / "res_unet_2d.yaml"
    return [stack["data"], stack["model"], stack["trainer"]]


ALL = sorted(CONFIGS.glob("*/*.yaml"))


def config_args(config: Path, run_dir: Path) -> list[str]:
    args = ["fit"] + [a for part in stack_for(config) for a in ("--config", str(part))]
    return [*args, *QUICK, "--trainer.default_root_dir", str(run_dir)]


@pytest.mark.parametrize("config", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_runs(config: Path, tmp_path: Path) -> None:
    args = config_args(config, tmp_path)
    text = "".join(p.read_text() for p in stack_for(config))
    if "accelerator: gpu" in text and not torch.cuda.is_available():
        args += ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true"]  # all else as configured
    if "strategy: ddp" in text:  # DDP relaunches its command: run the real CLI, not pytest
        result = run_subprocess(args)
        assert result.returncode == 0, result.stderr[-3000:]
    else:
        assert run_cli(args) == 0
    assert (tmp_path / "metrics" / "test_summary.json").is_file()


EXPERIMENT_CONFIGS = sorted(p for p in (REPO / "experiments").glob("*/*.yaml") if p.name != "study.yaml")


@pytest.mark.parametrize("config", EXPERIMENT_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_experiment_config_parses(config: Path, capsys) -> None:
    """An experiment's own configs live in its folder; they read data from ../shared, so only the parse (types,
    class paths, stacking with their companions) is checked here, everywhere."""
    assert re.search(r"^# run-with:", config.read_text(), flags=re.MULTILINE), f"{config}: no run-with line"
    args = ["fit"] + [a for part in stack_for(config) for a in ("--config", str(part))] + ["--print_config"]
    with pytest.raises(SystemExit) as done:
        run_cli(args)
    assert done.value.code in (None, 0)
    assert "class_path" in capsys.readouterr().out


@pytest.mark.gpu
@pytest.mark.parametrize("config", [p for p in ALL if "accelerator: gpu" in p.read_text()], ids=lambda p: p.name)
def test_gpu_config_runs_on_a_gpu(config: Path, tmp_path: Path) -> None:
    assert run_cli(config_args(config, tmp_path)) == 0
