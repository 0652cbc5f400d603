import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.conftest import make_msd
from tests.integration.helpers import TINY_3D, run_cli, run_subprocess, tiny_fit_args


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path]:
    """One tiny fit (followed by its automatic test) shared by the checks below."""
    root = tmp_path_factory.mktemp("fit")
    dataset = make_msd(root / "data", n=12, shape=(20, 24, 16))
    run_dir = root / "run"
    assert run_cli(tiny_fit_args(dataset, run_dir)) == 0
    return dataset, run_dir


def test_fit_writes_a_complete_run_folder(fitted) -> None:
    dataset, run_dir = fitted
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "config.yaml").is_file() and (run_dir / "metrics.csv").is_file()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"] == ["fit", "test"]
    assert manifest["split_sha256"] and manifest["seeds"]["seed_everything"] == 0
    assert manifest["packages"]["torch"] and manifest["config"]["model"]["class_path"].endswith("SegmentationTask")
    assert set(manifest["git"]) == {"commit", "dirty"}


def test_test_stage_scores_every_held_out_case_in_source_geometry(fitted) -> None:
    dataset, run_dir = fitted
    splits = json.loads((dataset.parent / "splits.json").read_text())
    with (run_dir / "metrics" / "test_per_case.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["case_id"] for r in rows) == sorted(splits["test"])
    assert {"dice_ball", "dice_box", "iou_ball", "precision_box", "recall_ball", "hd95_box"} <= set(rows[0])
    summary = json.loads((run_dir / "metrics" / "test_summary.json").read_text())
    assert summary["cases"] == len(rows) and 0 <= summary["dice"] <= 1
    for cid in splits["test"]:
        pred = nib.load(str(run_dir / "predictions" / f"{cid}.nii.gz"))
        src = nib.load(str(dataset / "imagesTr" / f"{cid}.nii.gz"))
        assert pred.shape == src.shape and np.allclose(pred.affine, src.affine)
        assert set(np.unique(np.asanyarray(pred.dataobj))) <= {0, 1, 2}


def test_validate_test_and_predict_from_a_checkpoint(fitted, tmp_path: Path) -> None:
    dataset, run_dir = fitted
    ckpt = str(run_dir / "checkpoints" / "best.ckpt")
    out = tmp_path / "eval"
    assert run_cli(tiny_fit_args(dataset, out, "--ckpt_path", ckpt, command="validate")) == 0
    assert (out / "metrics" / "val_per_case.csv").is_file()
    assert run_cli(tiny_fit_args(dataset, out, "--ckpt_path", ckpt, command="test")) == 0
    first = (out / "metrics" / "test_per_case.csv").read_text()
    assert run_cli(tiny_fit_args(dataset, out, "--ckpt_path", ckpt, command="test")) == 0
    assert (out / "metrics" / "test_per_case.csv").read_text() == first  # evaluation is deterministic
    new_images = tmp_path / "new"
    (new_images).mkdir()
    (new_images / "scan.nii.gz").write_bytes((dataset / "imagesTr" / "case_000.nii.gz").read_bytes())
    pred_dir = tmp_path / "pred"
    assert (
        run_cli(
            tiny_fit_args(
                dataset, pred_dir, "--ckpt_path", ckpt, "--data.predict_dataset", str(new_images), command="predict"
            )
        )
        == 0
    )
    assert nib.load(str(pred_dir / "predictions" / "scan.nii.gz")).shape == (20, 24, 16)


def test_rerunning_a_finished_fit_resumes_and_does_not_train_again(fitted) -> None:
    dataset, run_dir = fitted
    before = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert run_cli(tiny_fit_args(dataset, run_dir, "--test_after_fit", "false")) == 0
    after = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert before == after == 6
    history = (run_dir / "manifest_history.jsonl").read_text().splitlines()
    assert len(history) == 2


def test_print_config_shows_the_resolved_run(tmp_path: Path) -> None:
    result = run_subprocess(["fit", "--config", TINY_3D, "--data.dataset", "somewhere", "--print_config"])
    assert result.returncode == 0, result.stderr
    assert "class_path: medlight.nets.ResUNet" in result.stdout and "dataset: somewhere" in result.stdout


def test_fit_refuses_a_bad_dataset_with_the_report_and_no_traceback(tmp_path: Path) -> None:
    dataset = make_msd(tmp_path / "bad", n=8)
    (dataset / "imagesTr" / "case_003.nii.gz").write_bytes(b"not a nifti")
    result = run_subprocess(tiny_fit_args(dataset, tmp_path / "run"))
    assert result.returncode == 2
    assert "case_003.nii.gz" in result.stderr and "unreadable" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_check_data_exit_codes_and_report(tmp_path: Path) -> None:
    good = make_msd(tmp_path / "good", n=3)
    result = run_subprocess(["check-data", str(good)])
    assert result.returncode == 0 and "0 error(s)" in result.stdout
    (good / "labelsTr" / "case_001.nii.gz").unlink()
    result = run_subprocess(["check-data", str(good), "--json"])
    assert result.returncode == 1
    problems = [json.loads(line) for line in result.stdout.splitlines()]
    assert {(p["case_id"], p["check"]) for p in problems} == {("case_001", "missing_file")}
    assert run_subprocess(["check-data", str(tmp_path / "nowhere")]).returncode == 2


def test_usage_for_unknown_commands() -> None:
    assert run_cli(["frobnicate"]) == 2
    assert run_cli(["--help"]) == 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--model.init_args.net.init_args.out_channels", "5"], "Set the network's out_channels"),
        (["--model.init_args.net.init_args.in_channels", "2"], "cannot take a 1-channel"),
    ],
)
def test_a_network_that_does_not_fit_the_data_is_refused(
    fitted, tmp_path: Path, capsys, override: list[str], message: str
) -> None:
    dataset, _ = fitted
    assert run_cli(tiny_fit_args(dataset, tmp_path / "run", *override)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()
