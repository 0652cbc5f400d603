"""Out-of-fold tables: each fold's validation cases scored per fold and pooled, each case once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from medlight.cli import main
from medlight.runs.layout import RunLayout, write_table
from medlight.studies.runner import run_dir
from medlight.studies.spec import load_study


def test_per_fold_and_pooled_out_of_fold_tables(tmp_path: Path) -> None:
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    (study_dir / "study.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "cv",
                "variants": {"net": {"args": {}}},
                "grid": {
                    "fold": {"keys": ["data.init_args.fold"], "values": [0, 1, 2]},
                    "seed": {"keys": ["seed_everything"], "values": [0]},
                },
            },
            sort_keys=False,
        )
    )
    study = load_study(study_dir)
    dice = {0: [0.9, 0.7], 1: [0.6, 0.8], 2: [0.5]}  # unequal folds: the pooled mean is over cases
    for run in study.runs():
        fold = run.point["fold"]
        rows = [{"case_id": f"c{fold}{i}", "dice_a": d} for i, d in enumerate(dice[fold])]
        layout = RunLayout(run_dir(study, "default", run, tmp_path / "runs"))
        write_table(rows, layout.per_case("val"))
        if fold == 0:  # the last validation differs from the best one: the best (the tested model's) is used
            write_table([{**row, "dice_a": 0.0} for row in rows], layout.per_case("val"))
            write_table(rows, layout.per_case("best_val"))
    assert main(["study", "cv", str(study_dir), "--runs-root", str(tmp_path / "runs"), "--out", str(tmp_path)]) == 0
    summary = pd.read_csv(tmp_path / "cv_summary.csv")
    assert summary["fold"].astype(str).tolist() == ["0", "1", "2", "pooled"]
    assert summary["dice_a"].tolist()[:3] == pytest.approx([0.8, 0.7, 0.5])
    pooled = summary.iloc[-1]
    assert pooled["dice_a"] == pytest.approx(3.5 / 5) and pooled["cases"] == 5 and bool(pooled["complete"])
    assert summary["validation"].tolist() == ["best", "last", "last", "best+last"]
    assert len(pd.read_csv(tmp_path / "cv_per_case.csv")) == 5
