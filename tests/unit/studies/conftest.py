"""A report folder with no run folders: only the CSVs a committed report keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

VARIANTS = ("base", "good")


def write_study(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": "saved",
        "description": "two variants, two seeds, two accelerations",
        "variants": {v: [] for v in VARIANTS},
        "grid": {
            "acceleration": {"keys": ["data.init_args.acceleration"], "values": [4, 8]},
            "seed": {"keys": ["seed_everything"], "values": [0, 1]},
        },
        "conditions": ["acceleration"],
        "budgets": {"cpu": {"trainer.max_steps": 10}},
        "baseline": "base",
        "primary_metric": "ssim",
    }
    (folder / "study.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


def write_saved_report(report: Path, with_curves: bool = True) -> Path:
    rng = np.random.default_rng(0)
    cases, runs, curves = [], [], []
    for variant in VARIANTS:
        for acceleration in (4, 8):
            for seed in (0, 1):
                ident = {"variant": variant, "acceleration": acceleration, "seed": seed}
                run = f"{variant}/acceleration{acceleration}_seed{seed}"
                shift = 0.03 if variant == "good" else 0.0
                values = 0.9 - 0.01 * acceleration + shift + 0.01 * rng.standard_normal(8)
                cases += [{**ident, "run": run, "case_id": f"c{i}", "ssim": v} for i, v in enumerate(values)]
                runs.append({**ident, "run": run, "cases": 8, "ssim": values.mean(), "ssim_std": values.std()})
                for step in (10, 20, 30):
                    curves.append({**ident, "run": run, "series": "val/ssim", "step": step, "value": step / 40})
                    curves.append({**ident, "run": run, "series": "train/loss", "step": step, "value": 1 / step})
    report.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(cases).to_csv(report / "results.csv", index=False)
    pd.DataFrame(runs).assign(wall_seconds=60.0).to_csv(report / "runs.csv", index=False)
    if with_curves:
        pd.DataFrame(curves).to_csv(report / "curves.csv", index=False)
    return report


@pytest.fixture(scope="session")
def saved_report(tmp_path_factory) -> Path:
    """A study re-rendered from its CSVs alone; returns the report folder."""
    from medlight.studies.render import make_report
    from medlight.studies.spec import load_study

    root = tmp_path_factory.mktemp("saved")
    study = load_study(write_study(root / "study"))
    report = write_saved_report(root / "study" / "reports" / "cpu")
    make_report(study, "cpu", runs_root=root / "no_runs")
    return report
