"""Two CPU processes (gloo): every validation and test case is scored exactly once."""

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import make_msd
from tests.integration.helpers import run_subprocess, tiny_fit_args


@pytest.mark.slow
def test_ddp_fit_scores_each_case_once(tmp_path: Path) -> None:
    data = make_msd(tmp_path / "data", n=13, shape=(20, 20, 16))
    run_dir = tmp_path / "run"
    result = run_subprocess(
        tiny_fit_args(
            data, run_dir, "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.max_epochs", "1"
        ),
        timeout=500,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    splits = json.loads((data.parent / "splits.json").read_text())
    for stage, expected in (("val", splits["folds"][0]), ("test", splits["test"])):
        with (run_dir / "metrics" / f"{stage}_per_case.csv").open() as f:
            ids = [row["case_id"] for row in csv.DictReader(f)]
        assert sorted(ids) == sorted(expected), stage  # odd counts: no padding duplicates, none missing
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["world_size"] == 2
