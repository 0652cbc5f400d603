"""``medlight evaluate``: a folder of predictions scored into the tables a run's test writes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medlight.cli import main
from medlight.errors import DatasetError
from medlight.metrics.segmentation import METRICS, case_metrics
from medlight.runs.layout import RunLayout
from medlight.studies.evaluate import evaluate_folder
from tests.conftest import save_nifti


def labels_and_predictions(root: Path, n: int = 3, spacing=(1.0, 1.0, 2.0)) -> tuple[Path, Path, list]:
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(n):
        ref = np.zeros((12, 10, 8), np.uint8)
        ref[2:7, 2:6, 1:5] = 1
        ref[8:11, 5:9, 4:7] = 2
        pred = ref.copy()
        pred[rng.random(ref.shape) < 0.05 * (i + 1)] = 0
        save_nifti(ref, root / "labelsTs" / f"case_{i}.nii.gz", spacing)
        save_nifti(pred, root / "pred" / f"case_{i}.nii.gz", spacing)
        pairs.append((pred, ref))
    return root / "pred", root / "labelsTs", pairs


def test_scores_match_case_metrics_and_write_a_run_like_folder(tmp_path: Path) -> None:
    pred_dir, ref_dir, pairs = labels_and_predictions(tmp_path)
    (pred_dir / "plans.json").write_text("{}")  # nnU-Net writes such files beside its predictions: ignored
    out = tmp_path / "out"
    assert main(["evaluate", str(pred_dir), "--reference", str(ref_dir), "--labels", '{"0":"bg","1":"a","2":"b"}',
                 "--out", str(out)]) == 0  # fmt: skip
    layout = RunLayout(out)
    rows = pd.read_csv(layout.per_case("test"))
    assert rows["case_id"].tolist() == ["case_0", "case_1", "case_2"]
    assert list(rows.columns) == ["case_id", *(f"{m}_{c}" for m in METRICS for c in ("a", "b"))]
    for i, (pred, ref) in enumerate(pairs):
        expected = case_metrics(torch.from_numpy(pred)[None], torch.from_numpy(ref)[None], 3, [1.0, 1.0, 2.0])
        assert rows.loc[i, "dice_a"] == pytest.approx(float(expected[0, 0]))
        assert rows.loc[i, "hd95_b"] == pytest.approx(float(expected[4, 1]))
        assert rows.loc[i, "nsd_a"] == pytest.approx(float(expected[5, 0]))
    summary = layout.read_summary("test")
    assert summary["cases"] == 3 and summary["dice_a"] == pytest.approx(rows["dice_a"].mean())
    counts = pd.read_csv(layout.table("test_counts.csv"))
    assert (counts["n_ref_a"] == (pairs[0][1] == 1).sum()).all()
    assert (counts["tp_a"] + counts["fn_a"] == counts["n_ref_a"]).all()
    assert json.loads(layout.external.read_text())["kind"] == "evaluated predictions"
    assert layout.is_complete()


def test_labels_from_dataset_json_and_channel_named_predictions(tmp_path: Path) -> None:
    pred_dir, ref_dir, _ = labels_and_predictions(tmp_path, n=2)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "left": 1, "right": 2}}))
    for f in pred_dir.iterdir():  # medlight names a multi-channel case's prediction after its first channel file
        f.rename(f.with_name(f.name.replace(".nii.gz", "_0000.nii.gz")))
    layout = evaluate_folder(pred_dir, ref_dir, tmp_path / "out")
    rows = pd.read_csv(layout.per_case("test"))
    assert rows["case_id"].tolist() == ["case_0", "case_1"] and "dice_right" in rows


def test_png_predictions(tmp_path: Path) -> None:
    for folder, shift in (("ref", 0), ("pred", 1)):
        (tmp_path / folder).mkdir()
        mask = np.zeros((20, 16), np.uint8)
        mask[4 + shift : 12 + shift, 3:10] = 255  # a PNG mask stores label values; here 0 and 255
        Image.fromarray(mask).save(tmp_path / folder / "img_0.png")
    layout = evaluate_folder(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", {0: "bg", 255: "lesion"})
    rows = pd.read_csv(layout.per_case("test"))
    assert rows.loc[0, "dice_lesion"] == pytest.approx(2 * 7 * 7 / (2 * 8 * 7))


def test_clear_errors(tmp_path: Path, capsys) -> None:
    pred_dir, ref_dir, _ = labels_and_predictions(tmp_path)
    labels = {0: "bg", 1: "a", 2: "b"}
    (pred_dir / "case_2.nii.gz").rename(pred_dir / "other.nii.gz")
    with pytest.raises(DatasetError, match=r"1 case\(s\) without prediction \[case_2\], 1 prediction\(s\) without"):
        evaluate_folder(pred_dir, ref_dir, tmp_path / "out", labels)
    (pred_dir / "other.nii.gz").rename(pred_dir / "case_2.nii.gz")
    with pytest.raises(DatasetError, match=r"label values \[2\] are not declared"):
        evaluate_folder(pred_dir, ref_dir, tmp_path / "out", {0: "bg", 1: "a"})
    save_nifti(np.zeros((12, 10, 8), np.uint8), pred_dir / "case_1.nii.gz", (1.0, 1.0, 3.0))
    with pytest.raises(DatasetError, match="case_1.nii.gz: spacing"):
        evaluate_folder(pred_dir, ref_dir, tmp_path / "out", labels)
    nib.save(nib.Nifti1Image(np.zeros((12, 10, 8), np.uint8), np.diag([1.0, 1.0, 2.0, 1.0]) + np.eye(4, k=3) * 5),
             str(pred_dir / "case_1.nii.gz"))  # fmt: skip
    with pytest.raises(DatasetError, match=r"origin/orientation \(affine\) differs"):
        evaluate_folder(pred_dir, ref_dir, tmp_path / "out", labels)
    save_nifti(np.zeros((12, 10, 9), np.uint8), pred_dir / "case_1.nii.gz", (1.0, 1.0, 2.0))
    assert main(["evaluate", str(pred_dir), "--reference", str(ref_dir)]) == 2
    assert "shape (12, 10, 9) differs from the reference" in capsys.readouterr().err


def test_a_study_reports_external_variants_like_runs(tmp_path: Path) -> None:
    """Two baselines from outside medlight: a scored run-like folder and a folder of predictions to score."""
    import yaml

    from medlight.studies.render import make_report
    from medlight.studies.report import collect
    from medlight.studies.spec import load_study

    pred_dir, ref_dir, _ = labels_and_predictions(tmp_path / "data", n=4)
    worse = tmp_path / "worse"
    worse.mkdir()
    for f in pred_dir.iterdir():
        image = nib.load(str(f))
        array = np.asarray(image.dataobj).copy()
        array[:, :, :2] = 0
        nib.save(nib.Nifti1Image(array, image.affine), str(worse / f.name))
    evaluate_folder(pred_dir, ref_dir, tmp_path / "nnunet_eval", {0: "bg", 1: "a", 2: "b"})
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "ext",
                "variants": {
                    "nnunet": {"external": str(tmp_path / "nnunet_eval")},
                    "monai": {"external": str(worse), "reference": str(ref_dir), "labels": {0: "bg", 1: "a", 2: "b"}},
                },
                "grid": {"seed": {"keys": ["seed_everything"], "values": [0, 1]}},
                "baseline": "nnunet",
            },
            sort_keys=False,
        )
    )
    spec = load_study(study)
    assert [r.name for r in spec.runs()] == ["nnunet/single", "monai/single"]  # one run each, no grid
    runs_root = tmp_path / "runs"
    assert main(["study", "run", str(study), "--runs-root", str(runs_root)]) == 0
    collected = collect(spec, spec.default_budget, runs_root)
    assert collected.missing == [] and set(collected.cases["variant"]) == {"nnunet", "monai"}
    assert "nsd_a" in collected.metric_columns
    report = make_report(spec, spec.default_budget, runs_root, tmp_path / "report")
    assert "monai" in Path(report).read_text()
    (tmp_path / "nnunet_eval" / "metrics" / "test_summary.json").unlink()
    assert main(["study", "run", str(study), "--runs-root", str(runs_root)]) == 1  # a missing source is a failure
