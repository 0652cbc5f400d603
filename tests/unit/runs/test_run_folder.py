"""Run folders: a derived default per configuration, and a folder of another run is never resumed or overwritten."""

from pathlib import Path

import pytest
import yaml

from medlight.cli import check_same_run, default_run_dir
from medlight.errors import ConfigError
from medlight.runs.layout import RunLayout


def config(net: str = "medlight.nets.ResUNet", dataset: str = "data/hippocampus", max_epochs: int = 80) -> dict:
    return {
        "model": {"class_path": "medlight.tasks.SegmentationTask", "init_args": {"net": {"class_path": net}}},
        "data": {"class_path": "medlight.data.SegmentationDataModule", "init_args": {"dataset": dataset}},
        "trainer": {"max_epochs": max_epochs},
    }


def test_default_run_folder_is_per_configuration() -> None:
    folder = default_run_dir(config())
    assert folder.startswith("runs/hippocampus/ResUNet-") and folder == default_run_dir(config(max_epochs=5))
    assert default_run_dir(config(net="medlight.nets.UNet")) != folder
    assert default_run_dir(config(dataset="other/hippocampus")) != folder


def test_a_folder_of_another_run_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    layout.config.write_text(yaml.safe_dump(config()))
    check_same_run(layout, config(max_epochs=5))  # the same run, trained longer: resumes
    with pytest.raises(ConfigError, match=r"holds another run \(model.net differ"):
        check_same_run(layout, config(net="medlight.nets.AttentionBranchNetwork"))
    with pytest.raises(ConfigError, match="data.dataset"):
        check_same_run(layout, config(dataset="elsewhere"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
