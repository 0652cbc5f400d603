import json
from pathlib import Path

import numpy as np
import pytest

from medlight.data.datalist import discover, discover_images
from medlight.errors import DatasetError
from tests.conftest import LABELS, make_msd, save_nifti


def test_msd_layout(msd_dataset: Path) -> None:
    desc = discover(msd_dataset)
    assert len(desc.cases) == 10
    assert desc.labels == LABELS
    assert desc.class_names == ["ball", "box"]
    assert desc.channels == ["MRI"] and desc.spatial_dims == 3
    assert desc.problems == []
    case = desc.cases[0]
    assert case.case_id == "case_000" and case.label is not None and case.label.name == "case_000.nii.gz"


def test_nnunet_v2_groups_channel_files(dataset_factory) -> None:
    desc = discover(dataset_factory("nnunet_v2", channels=2))
    assert desc.labels == LABELS
    assert desc.channels == ["mod0", "mod1"]
    assert all(len(c.images) == 2 for c in desc.cases)
    assert [p.name for p in desc.cases[0].images] == ["case_000_0000.nii.gz", "case_000_0001.nii.gz"]


def test_png_folders_are_2d(dataset_factory) -> None:
    desc = discover(dataset_factory("png"), labels={0: "bg", 1: "ball", 2: "box"})
    assert desc.spatial_dims == 2 and len(desc.cases) == 8 and not desc.problems
    assert not desc.channels_declared


def test_orphans_are_problems_not_crashes(tmp_path: Path) -> None:
    root = tmp_path / "pairs"
    save_nifti(np.zeros((4, 4, 4), "float32"), root / "images" / "a.nii.gz")
    save_nifti(np.zeros((4, 4, 4), "float32"), root / "images" / "b.nii.gz")
    save_nifti(np.zeros((4, 4, 4), "uint8"), root / "labels" / "b.nii.gz")
    save_nifti(np.zeros((4, 4, 4), "uint8"), root / "labels" / "c.nii.gz")
    desc = discover(root, labels={0: "bg", 1: "fg"})
    checks = {(p.case_id, p.check) for p in desc.problems}
    assert checks == {("a", "missing_label"), ("c", "missing_image")}
    assert [c.case_id for c in desc.cases] == ["a", "b"]


def test_dataset_json_paths_leaving_the_folder_and_missing_files(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "d", n=3)
    spec = json.loads((root / "dataset.json").read_text())
    spec["training"][0]["image"] = "../../outside.nii.gz"
    spec["training"][1]["label"] = "./labelsTr/nope.nii.gz"
    (root / "dataset.json").write_text(json.dumps(spec))
    desc = discover(root)
    checks = {(p.case_id, p.check) for p in desc.problems}
    assert ("outside", "path_outside_dataset") in checks
    assert ("case_001", "missing_file") in checks
    # the real label of case_001 is no longer listed: it is an orphan now
    assert ("case_001", "missing_image") in checks


def test_bad_dataset_json_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "nothing")
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        discover(tmp_path)


def test_labels_given_must_agree_with_dataset_json(msd_dataset: Path) -> None:
    with pytest.raises(DatasetError, match="differ"):
        discover(msd_dataset, labels={0: "background", 1: "other"})


def test_discover_images_for_prediction(msd_dataset: Path, tmp_path: Path) -> None:
    assert len(discover_images(msd_dataset)) == 10  # the dataset's image folder
    flat = tmp_path / "flat"
    save_nifti(np.zeros((4, 4, 4), "float32"), flat / "x.nii.gz")
    assert [c.case_id for c in discover_images(flat)] == ["x"]
