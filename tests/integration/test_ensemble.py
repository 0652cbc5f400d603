"""A fold ensemble: the mean of the folds' softmax, tested on the held-out set, written as a run-like folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from medlight.cli import main
from medlight.contracts import SegmentationSpec
from medlight.errors import ConfigError
from medlight.ops.inference import Inference
from medlight.runs.layout import RunLayout
from medlight.studies.runner import run_dir
from medlight.studies.spec import load_study
from medlight.tasks.ensemble import EnsembleTask
from tests.conftest import make_msd
from tests.integration.helpers import run_cli, tiny_fit_args


class Constant(nn.Module):
    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.view(1, -1, 1, 1).expand(x.shape[0], -1, *x.shape[2:]).clone()


def test_ensemble_probabilities_are_the_mean_of_the_members_softmax() -> None:
    nets = [Constant([2.0, 0.0]), Constant([0.0, 3.0])]
    task = EnsembleTask(nets, inference=Inference(sw_batch_size=1))
    task.spec = SegmentationSpec(["a"], 1, 2, (4, 4))
    probs = task.predict_volume(torch.zeros(1, 1, 6, 5))
    expected = (torch.softmax(torch.tensor([2.0, 0.0]), 0) + torch.softmax(torch.tensor([0.0, 3.0]), 0)) / 2
    assert probs.shape == (1, 2, 6, 5) and torch.allclose(probs[0, :, 3, 2], expected)


@pytest.fixture(scope="module")
def folds(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("ensemble")
    data = make_msd(root / "data", n=10, shape=(20, 20, 16))
    runs = []
    for fold in (0, 1):
        run = root / f"fold{fold}"
        extra = ["--data.fold", str(fold)]
        assert run_cli(tiny_fit_args(data, run, *extra)) == 0
        runs.append(run)
    return root, runs


def test_an_ensemble_of_one_run_is_that_run_and_of_two_is_its_own_row(folds, tmp_path: Path) -> None:
    root, runs = folds
    single = tmp_path / "single"
    assert main(["ensemble", "--runs", str(runs[0]), "--out", str(single), "--accelerator", "cpu"]) == 0
    own = pd.read_csv(RunLayout(runs[0]).per_case("test"))
    alone = pd.read_csv(RunLayout(single).per_case("test"))
    pd.testing.assert_frame_equal(own, alone)
    pair = tmp_path / "pair"
    assert main(["ensemble", "--runs", *map(str, runs), "--out", str(pair), "--accelerator", "cpu"]) == 0
    layout = RunLayout(pair)
    assert layout.is_complete() and pd.read_csv(layout.per_case("test"))["case_id"].tolist() == own["case_id"].tolist()
    assert layout.read_summary("test")["cases"] == len(own) and layout.table("test_counts.csv").is_file()
    external = json.loads(layout.external.read_text())
    assert [m["fold"] for m in external["members"]] == [0, 1] and len(external["checkpoints"]) == 2
    assert sorted(p.name for p in layout.predictions.iterdir()) == sorted(f"{c}.nii.gz" for c in own["case_id"])


def test_an_ensemble_refuses_runs_of_other_data(folds, tmp_path: Path) -> None:
    root, runs = folds
    other = tmp_path / "other"
    other.mkdir()
    config = (runs[1] / "config.yaml").read_text().replace("patch_size:\n    - 16", "patch_size:\n    - 8")
    (other / "config.yaml").write_text(config)
    (other / "checkpoints").mkdir()
    (other / "checkpoints" / "best.ckpt").write_bytes((runs[1] / "checkpoints" / "best.ckpt").read_bytes())
    with pytest.raises(ConfigError, match="data settings differ"):
        from medlight.studies.ensemble import ensemble_runs

        ensemble_runs([runs[0], other], tmp_path / "out", "cpu")


def test_a_study_variant_ensembling_another_runs_after_it_and_has_its_own_report_row(folds, tmp_path: Path) -> None:
    root, runs = folds
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    grid = {
        "fold": {"keys": ["data.init_args.fold"], "values": [0, 1]},
        "seed": {"keys": ["seed_everything"], "values": [0]},
    }
    spec = {"name": "cv", "variants": {"net_ensemble": {"ensemble": "net"}, "net": {"args": {}}}, "grid": grid}
    (study_dir / "study.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    study = load_study(study_dir)
    assert study.variants == ["net", "net_ensemble"] and study.after == {"net_ensemble": ["net"]}
    ensemble = study.runs()[-1]
    assert ensemble.name == "net_ensemble/seed0" and ensemble.members == ("net/fold0_seed0", "net/fold1_seed0")
    runs_root = tmp_path / "runs"
    for run, trained in zip(study.runs(), runs):  # the members, as if `study run` had trained them
        shutil.copytree(trained, run_dir(study, "default", run, runs_root))
    assert main(["study", "run", str(study_dir), "--runs-root", str(runs_root)]) == 0
    out = RunLayout(run_dir(study, "default", ensemble, runs_root))
    assert out.is_complete() and len(json.loads(out.external.read_text())["runs"]) == 2
    report = tmp_path / "report"
    assert main(["study", "report", str(study_dir), "--runs-root", str(runs_root), "--out", str(report)]) == 0
    results = pd.read_csv(report / "results.csv")
    assert set(results["variant"]) == {"net", "net_ensemble"}
    assert "net_ensemble" in (report / "report.md").read_text()


def test_an_ensemble_variant_needs_folds_and_a_trained_member(tmp_path: Path) -> None:
    for variants, grid, message in (
        ({"e": {"ensemble": "net"}, "net": {"args": {}}}, {"seed": {"key": "seed_everything", "values": [0]}}, "fold"),
        ({"e": {"ensemble": "x"}, "net": {"args": {}}}, {}, "names no other variant"),
    ):
        (tmp_path / "study.yaml").write_text(yaml.safe_dump({"variants": variants, "grid": grid}))
        with pytest.raises(ConfigError, match=message):
            load_study(tmp_path)
