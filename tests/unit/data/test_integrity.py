import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medlight.data.datalist import discover
from medlight.data.integrity import bad_case_ids, check_dataset
from medlight.data.problems import format_report
from tests.conftest import make_msd, make_nnunet_v2, make_png, save_nifti


def checks_of(root: Path, **kw) -> set[tuple[str | None, str]]:
    return {(p.case_id, p.check) for p in check_dataset(discover(root, **kw), progress=False)}


def test_clean_dataset_has_no_problem(msd_dataset: Path) -> None:
    assert check_dataset(discover(msd_dataset), progress=False) == []


def test_every_kind_of_bad_input_is_listed_in_one_pass(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "bad", n=10)
    img, lab = root / "imagesTr", root / "labelsTr"
    # 0: truncated gzip
    data = (img / "case_000.nii.gz").read_bytes()
    (img / "case_000.nii.gz").write_bytes(data[: len(data) // 2])
    # 1: not a NIfTI at all
    (img / "case_001.nii.gz").write_bytes(gzip.compress(b"hello, I am a text file" * 20))
    # 2: label shape differs from image
    save_nifti(np.zeros((20, 24, 15), np.uint8), lab / "case_002.nii.gz")
    # 3: spacing differs
    label3 = np.asanyarray(nib.load(str(lab / "case_003.nii.gz")).dataobj)
    save_nifti(label3, lab / "case_003.nii.gz", spacing=(1.0, 1.0, 2.0))
    # 4: NaN voxels in the image
    image4 = nib.load(str(img / "case_004.nii.gz")).get_fdata().astype(np.float32)
    image4[0, 0, :3] = np.nan
    save_nifti(image4, img / "case_004.nii.gz")
    # 5: label value 7 is not declared
    label5 = label3.copy()
    label5[0, 0, 0] = 7
    save_nifti(label5, lab / "case_005.nii.gz")
    # 6: image with wrong number of dimensions
    save_nifti(np.zeros((20, 24), np.float32), img / "case_006.nii.gz")
    # 7: image with 2 channels where the dataset declares 1
    save_nifti(np.zeros((20, 24, 16, 2), np.float32), img / "case_007.nii.gz")
    # 8: label without image, and a path leaving the dataset
    spec = json.loads((root / "dataset.json").read_text())
    spec["training"] = [e for e in spec["training"] if "case_008" not in e["image"]]
    spec["training"].append({"image": "../elsewhere/x.nii.gz", "label": "./labelsTr/case_009.nii.gz"})
    (root / "dataset.json").write_text(json.dumps(spec))

    problems = check_dataset(discover(root), progress=False)
    found = {(p.case_id, p.check) for p in problems}
    assert ("case_000", "unreadable") in found
    assert ("case_001", "unreadable") in found
    assert ("case_002", "shape_mismatch") in found
    assert ("case_003", "spacing_mismatch") in found
    assert ("case_004", "non_finite") in found
    assert ("case_005", "undeclared_label") in found
    assert ("case_006", "wrong_dimensions") in found
    assert ("case_007", "wrong_channels") in found
    assert ("case_008", "missing_image") in found
    assert ("x", "path_outside_dataset") in found
    bad = bad_case_ids(problems)
    assert {f"case_00{i}" for i in range(9)} <= bad
    report = format_report(problems, root, 10)
    assert "case_000.nii.gz: cannot be read" in report.replace(" [case_000]", "")
    assert report.count("\n") == len(problems)  # header plus one line per problem


def test_geometry_mismatch(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "geo", n=2)
    lab = root / "labelsTr" / "case_001.nii.gz"
    nii = nib.load(str(lab))
    affine = nii.affine.copy()
    affine[:3, 3] = [4.0, 0.0, 0.0]
    nib.save(nib.Nifti1Image(np.asanyarray(nii.dataobj), affine), str(lab))
    assert checks_of(root) == {("case_001", "geometry_mismatch")}


def test_float_labels_must_be_integers(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "f", n=2)
    save_nifti(np.full((20, 24, 16), 0.5, np.float32), root / "labelsTr" / "case_000.nii.gz")
    assert ("case_000", "non_integer_label") in checks_of(root)


def test_warnings_do_not_mark_cases_bad(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "w", n=3)
    save_nifti(np.zeros((20, 24, 16), np.uint8), root / "labelsTr" / "case_000.nii.gz")
    (root / "labelsTr" / "case_002.nii.gz").write_bytes((root / "labelsTr" / "case_001.nii.gz").read_bytes())
    problems = check_dataset(discover(root), progress=False)
    assert {(p.case_id, p.check, p.severity) for p in problems} == {
        ("case_000", "empty_label", "warning"),
        ("case_002", "duplicate_label", "warning"),
    }
    assert bad_case_ids(problems) == set()


def test_multichannel_nnunet_v2_checks_channels_agree(tmp_path: Path) -> None:
    root = make_nnunet_v2(tmp_path / "v2", n=3, channels=2)
    save_nifti(np.zeros((16, 16, 11), np.float32), root / "imagesTr" / "case_001_0001.nii.gz")
    assert checks_of(root) >= {("case_001", "shape_mismatch")}


def test_png_masks(tmp_path: Path) -> None:
    root = make_png(tmp_path / "png", n=3, rgb=True)
    assert checks_of(root, labels={0: "bg", 1: "ball", 2: "box"}) == set()
    assert ("img_00", "undeclared_label") in checks_of(root, labels={0: "bg", 1: "ball"})


@pytest.mark.shared_data
def test_real_hippocampus_problems_are_found(shared_hippocampus: Path) -> None:
    desc = discover(shared_hippocampus, labels={0: "background", 1: "anterior", 2: "posterior"})
    problems = check_dataset(desc, progress=False)
    errors = {(p.case_id, p.check) for p in problems if p.severity == "error"}
    assert errors == {
        ("hippocampus_118", "missing_label"),
        ("hippocampus_010", "missing_image"),
        ("hippocampus_281", "missing_image"),
    }
    warnings = {(p.case_id, p.check) for p in problems if p.severity == "warning"}
    assert ("hippocampus_010", "duplicate_label") in warnings
