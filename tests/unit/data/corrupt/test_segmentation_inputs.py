"""Corrupt segmentation inputs (MSD, nnU-Net v2, paired folders, 2D PNG): every defect is an error naming the
file and the check, from ``check_dataset`` (as ``check-data`` runs it) or the data module."""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlight.data.segmentation import SegmentationDataModule
from tests.conftest import LABELS, save_nifti
from tests.unit.data.corrupt.helpers import (
    IMAGE_DEFECTS,
    LABEL_DEFECTS,
    SEED,
    SHAPE,
    assert_flagged,
    check,
    edit_json,
    folders,
    msd,
    nnunet_v2,
    png,
)

LAYOUTS = {"msd": (msd, None), "nnunet_v2": (nnunet_v2, None), "folders": (folders, LABELS)}
IMAGE_FILE = {"msd": "case_001.nii.gz", "nnunet_v2": "case_001_0000.nii.gz", "folders": "case_001.nii.gz"}


def _seed(*names: str) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32("/".join(names).encode())])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("defect", sorted(IMAGE_DEFECTS))
def test_image_file_defect(tmp_path: Path, layout: str, defect: str) -> None:
    make, labels = LAYOUTS[layout]
    root = make(tmp_path / layout)
    change, expected = IMAGE_DEFECTS[defect]
    change(root / "imagesTr" / IMAGE_FILE[layout], _seed(layout, defect))
    assert_flagged(lambda: check(root, labels), expected, IMAGE_FILE[layout])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("defect", sorted(LABEL_DEFECTS))
def test_label_file_defect(tmp_path: Path, layout: str, defect: str) -> None:
    make, labels = LAYOUTS[layout]
    root = make(tmp_path / layout)
    change, expected = LABEL_DEFECTS[defect]
    change(root / "labelsTr" / "case_001.nii.gz", _seed(layout, defect, "label"))
    assert_flagged(lambda: check(root, labels), expected, "case_001.nii.gz")


# -- dataset.json (MSD) -------------------------------------------------------------------------------------
def _training(change: Callable[[list], object]) -> Callable:
    return lambda spec: {**spec, "training": change(spec["training"])}


def _entry(n: int, **fields: object) -> Callable:
    def change(spec: dict) -> dict:
        entry = {k: v for k, v in {**spec["training"][n], **fields}.items() if v is not ...}
        spec["training"][n] = entry
        return spec

    return change


MSD_SPEC = {
    "null": (lambda s: None, "must hold a JSON object"),
    "number": (lambda s: 3, "must hold a JSON object"),
    "string": (lambda s: "dataset", "must hold a JSON object"),
    "list": (lambda s: [s], "must hold a JSON object"),
    "training_string": (_training(lambda t: "imagesTr/case_000.nii.gz"), "'training' must be a list"),
    "training_dict": (_training(lambda t: t[0]), "'training' must be a list"),
    "training_list_of_strings": (_training(lambda t: [e["image"] for e in t]), "'training' must be a list"),
    "training_null": (_training(lambda t: None), "'training' must be a list"),
    "training_number": (_training(lambda t: 3), "'training' must be a list"),
    "labels_list": (lambda s: {**s, "labels": ["background", "ball", "box"]}, "labels must be an object"),
    "labels_null": (lambda s: {**s, "labels": None}, "labels must be an object"),
    "labels_name_name": (lambda s: {**s, "labels": {"background": "bg", "ball": "b"}}, "has no integer value"),
    "labels_value_twice": (lambda s: {**s, "labels": {"bg": 0, "ball": 1, "box": 1}}, "declared twice"),
    "labels_region": (lambda s: {**s, "labels": {"background": 0, "whole": [1, 2]}}, "region-based"),
    "labels_negative": (lambda s: {**s, "labels": {"0": "bg", "-1": "x"}}, "has no integer value"),
    "modality_names": (lambda s: {**s, "modality": {"T1": "MRI"}}, "'modality' must be an object"),
    "modality_list": (lambda s: {**s, "modality": ["MRI"]}, "'modality' must be an object"),
    "modality_empty": (lambda s: {**s, "modality": {}}, "'modality' must be an object"),
    "modality_string": (lambda s: {**s, "modality": "MRI"}, "'modality' must be an object"),
    "image_number": (_entry(1, image=7), "not a path"),
    "image_list": (_entry(1, image=["a.nii.gz"]), "not a path"),
    "image_null": (_entry(1, image=None), "has no 'image' path"),
    "image_key_missing": (_entry(1, image=...), "has no 'image' path"),
    "image_empty_string": (_entry(1, image=""), "has no 'image' path"),
    "label_number": (_entry(1, label=3.5), "not a path"),
    "label_dict": (_entry(1, label={"path": "x"}), "not a path"),
    "duplicate_entry": (_training(lambda t: [*t, t[1]]), "duplicate_case"),
    "image_outside_root": (_entry(1, image="../outside/case_009.nii.gz"), "path_outside_dataset"),
    "label_outside_root": (_entry(1, label="../outside/case_009.nii.gz"), "path_outside_dataset"),
    "image_absolute_outside": (lambda s: s, "path_outside_dataset"),  # path filled in by the test
    "image_listed_missing": (_entry(1, image="./imagesTr/nobody.nii.gz"), "missing_file"),
    "label_listed_missing": (_entry(1, label="./labelsTr/nobody.nii.gz"), "missing_file"),
    "label_key_missing": (_entry(1, label=...), "missing_label"),
    "entry_not_object": (_training(lambda t: [*t[:2], "case_002"]), "'training' must be a list"),
}


@pytest.mark.parametrize("variant", sorted(MSD_SPEC))
def test_msd_dataset_json(tmp_path: Path, variant: str) -> None:
    root = msd(tmp_path / "msd")
    outside = save_nifti(np.zeros(SHAPE, np.float32), tmp_path / "outside" / "case_009.nii.gz")
    change, expected = MSD_SPEC[variant]
    if variant == "image_absolute_outside":
        change = _entry(1, image=str(outside))
    edit_json(root / "dataset.json", change)
    assert_flagged(lambda: check(root), expected, "dataset.json")


def test_msd_invalid_json(tmp_path: Path) -> None:
    root = msd(tmp_path / "msd")
    (root / "dataset.json").write_text('{"training": [')
    assert_flagged(lambda: check(root), "not valid JSON", "dataset.json")


def test_msd_symlink_leaving_the_root(tmp_path: Path) -> None:
    root = msd(tmp_path / "msd")
    outside = save_nifti(np.zeros(SHAPE, np.float32), tmp_path / "outside" / "x.nii.gz")
    (root / "imagesTr" / "link.nii.gz").symlink_to(outside)
    edit_json(root / "dataset.json", _entry(1, image="./imagesTr/link.nii.gz"))
    assert_flagged(lambda: check(root), "path_outside_dataset", "link.nii.gz")


def test_msd_orphan_label(tmp_path: Path) -> None:
    root = msd(tmp_path / "msd")
    edit_json(root / "dataset.json", _training(lambda t: t[:2]))
    assert_flagged(lambda: check(root), "missing_image", "case_002.nii.gz")


def test_msd_same_case_id_in_two_folders(tmp_path: Path) -> None:
    root = msd(tmp_path / "msd")
    save_nifti(np.zeros(SHAPE, np.float32), root / "more" / "case_001.nii.gz")
    edit_json(root / "dataset.json", _training(lambda t: [*t, {"image": "./more/case_001.nii.gz", "label": None}]))
    assert_flagged(lambda: check(root), "duplicate_case", "dataset.json")


def test_config_labels_differ_from_dataset_json(tmp_path: Path) -> None:
    root = msd(tmp_path / "msd")
    assert_flagged(lambda: check(root, {0: "background", 1: "organ"}), "differ from dataset.json", "dataset.json")


# -- dataset.json (nnU-Net v2) ------------------------------------------------------------------------------
V2_SPEC = {
    "null": (lambda s: None, "must hold a JSON object"),
    "channel_names_list": (lambda s: {**s, "channel_names": ["mod0", "mod1"]}, "'channel_names' must be an object"),
    "channel_names_named": (lambda s: {**s, "channel_names": {"t1": "mod0"}}, "'channel_names' must be an object"),
    "channel_names_string": (lambda s: {**s, "channel_names": "mod0"}, "'channel_names' must be an object"),
    "file_ending_missing": (lambda s: {k: v for k, v in s.items() if k != "file_ending"}, "neither an MSD"),
    "file_ending_number": (lambda s: {**s, "file_ending": 3}, "'file_ending' must be"),
    "labels_list": (lambda s: {**s, "labels": ["background", "ball"]}, "labels must be an object"),
    "labels_name_name": (lambda s: {**s, "labels": {"background": "bg"}}, "has no integer value"),
    "labels_region": (lambda s: {**s, "labels": {"background": 0, "tumour": [1, 2]}}, "region-based"),
}


@pytest.mark.parametrize("variant", sorted(V2_SPEC))
def test_nnunet_v2_dataset_json(tmp_path: Path, variant: str) -> None:
    root = nnunet_v2(tmp_path / "v2")
    change, expected = V2_SPEC[variant]
    edit_json(root / "dataset.json", change)
    assert_flagged(lambda: check(root), expected, "dataset.json")


def _outside_file(tmp_path: Path) -> Path:
    return save_nifti(np.zeros(SHAPE, np.float32), tmp_path / "outside" / "x.nii.gz")


FOLDER_DEFECTS = {
    "image_symlink_outside": ("imagesTr", "case_001", "path_outside_dataset"),
    "label_symlink_outside": ("labelsTr", "case_001", "path_outside_dataset"),
    "image_without_label": ("labelsTr", None, "missing_label"),
    "label_without_image": ("imagesTr", None, "missing_image"),
}


@pytest.mark.parametrize("layout", ["nnunet_v2", "folders"])
@pytest.mark.parametrize("variant", sorted(FOLDER_DEFECTS))
def test_folder_files(tmp_path: Path, layout: str, variant: str) -> None:
    make, labels = LAYOUTS[layout]
    root = make(tmp_path / layout)
    folder, _, expected = FOLDER_DEFECTS[variant]
    name = IMAGE_FILE[layout] if folder == "imagesTr" else "case_001.nii.gz"
    target = root / folder / name
    if variant.endswith("symlink_outside"):
        target.unlink()
        target.symlink_to(_outside_file(tmp_path))
        assert_flagged(lambda: check(root, labels), expected, name)
        return
    for file in root.glob(f"{folder}/case_001*"):
        file.unlink()
    named = "case_001" + ("_0000.nii.gz" if layout == "nnunet_v2" and expected == "missing_label" else ".nii.gz")
    assert_flagged(lambda: check(root, labels), expected, named)


def test_nnunet_v2_missing_channel_file(tmp_path: Path) -> None:
    root = nnunet_v2(tmp_path / "v2")
    (root / "imagesTr" / "case_001_0001.nii.gz").unlink()
    assert_flagged(lambda: check(root), "wrong_channels", "case_001_0000.nii.gz")


def test_nnunet_v2_channel_files_differ_in_shape(tmp_path: Path) -> None:
    root = nnunet_v2(tmp_path / "v2")
    save_nifti(np.zeros((8, 8, 5), np.float32), root / "imagesTr" / "case_001_0001.nii.gz")
    assert_flagged(lambda: check(root), "shape_mismatch", "case_001_0001.nii.gz")


def test_folders_symlinked_image_folder_outside(tmp_path: Path) -> None:
    root = folders(tmp_path / "f")
    (root / "imagesTr").rename(tmp_path / "elsewhere")
    (root / "imagesTr").symlink_to(tmp_path / "elsewhere")
    assert_flagged(lambda: check(root, LABELS), "path_outside_dataset", "case_000.nii.gz")


def test_folders_same_case_twice(tmp_path: Path) -> None:
    root = folders(tmp_path / "f")
    save_nifti(np.zeros(SHAPE, np.float32), root / "imagesTr" / "case_001.nii")
    assert_flagged(lambda: check(root, LABELS), "duplicate_case", "case_001.nii")


def test_folders_without_image_folder(tmp_path: Path) -> None:
    (tmp_path / "empty" / "stuff").mkdir(parents=True)
    assert_flagged(lambda: check(tmp_path / "empty"), "no image folder", "empty")


@pytest.mark.parametrize("labels", [["background", "ball"], {"ball": "box"}, "ball", {"0": "bg", "a": [1]}])
def test_folders_bad_labels_argument(tmp_path: Path, labels: object) -> None:
    root = folders(tmp_path / "f")
    assert_flagged(lambda: check(root, labels), "label", "labels given in the config")


# -- 2D PNG ---------------------------------------------------------------------------------------------------
def _png_colour_mask(p: Path) -> None:
    mask = np.asarray(Image.open(p))
    rgb = np.stack([mask, mask * 0, mask], -1).astype(np.uint8)
    Image.fromarray(rgb).save(p)


PNG_DEFECTS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "image_truncated": ("images", lambda p: p.write_bytes(p.read_bytes()[:-30]), "unreadable"),
    "mask_truncated": ("masks", lambda p: p.write_bytes(p.read_bytes()[:-20]), "unreadable"),
    "image_text": ("images", lambda p: p.write_text("not a picture"), "unreadable"),
    "mask_empty_file": ("masks", lambda p: p.write_bytes(b""), "unreadable"),
    "mask_colour": ("masks", _png_colour_mask, "wrong_channels"),
    "mask_size_differs": ("masks", lambda p: Image.new("L", (10, 12)).save(p), "shape_mismatch"),
    "mask_value_undeclared": ("masks", lambda p: Image.new("L", (14, 12), 7).save(p), "undeclared_label"),
    "mask_0_255_without_label_map": ("masks", lambda p: Image.new("L", (14, 12), 255).save(p), "undeclared_label"),
    "image_two_channels": ("images", lambda p: Image.new("LA", (14, 12)).save(p), "wrong_channels"),
}


@pytest.mark.parametrize("variant", sorted(PNG_DEFECTS))
def test_png_defect(tmp_path: Path, variant: str) -> None:
    root = png(tmp_path / "png")
    folder, change, expected = PNG_DEFECTS[variant]
    change(root / folder / "img_01.png")
    assert_flagged(lambda: check(root, LABELS), expected, "img_01.png")


def test_png_symlink_outside(tmp_path: Path) -> None:
    root = png(tmp_path / "png")
    Image.new("L", (14, 12)).save(tmp_path / "elsewhere.png")
    (root / "images" / "img_01.png").unlink()
    (root / "images" / "img_01.png").symlink_to(tmp_path / "elsewhere.png")
    assert_flagged(lambda: check(root, LABELS), "path_outside_dataset", "img_01.png")


def test_png_same_name_twice(tmp_path: Path) -> None:
    root = png(tmp_path / "png")
    Image.new("L", (14, 12)).save(root / "images" / "img_01.bmp")
    assert_flagged(lambda: check(root, LABELS), "duplicate_case", "img_01")


# -- through the data module: fit and predict refuse with the file named -------------------------------------
def _module(root: Path, tmp_path: Path, **kw: object) -> SegmentationDataModule:
    return SegmentationDataModule(
        str(root), split_file=str(tmp_path / "splits.json"), num_folds=2, test_fraction=0.0, patch_size=(8, 8, 6), **kw
    )


def test_fit_refuses_flipped_gzip_payload(tmp_path: Path) -> None:
    root = msd(tmp_path / "msd")
    IMAGE_DEFECTS["gzip_payload_flip_a"][0](root / "imagesTr" / "case_002.nii.gz", _seed("fit"))
    assert_flagged(lambda: _module(root, tmp_path).prepare_data(), "unreadable", "case_002.nii.gz")


@pytest.mark.parametrize("defect", ["truncated", "huge_header", "extra_channel", "complex_values"])
def test_predict_checks_the_files_it_reads(tmp_path: Path, defect: str) -> None:
    root = msd(tmp_path / "msd")
    new = tmp_path / "new"
    new.mkdir()
    for i in range(2):
        shutil.copy(root / "imagesTr" / f"case_00{i}.nii.gz", new / f"scan_{i}.nii.gz")
    change, expected = IMAGE_DEFECTS[defect]
    target = new / "scan_1.nii.gz"
    change(target, _seed("predict", defect))
    module = _module(root, tmp_path, predict_dataset=str(new), cache="none")
    assert_flagged(lambda: module.setup("predict"), expected, "scan_1.nii.gz")


def test_predict_refuses_symlink_outside(tmp_path: Path) -> None:
    root = msd(tmp_path / "msd")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "scan.nii.gz").symlink_to(root / "imagesTr" / "case_000.nii.gz")
    module = _module(root, tmp_path, predict_dataset=str(tmp_path / "new"), cache="none")
    assert_flagged(lambda: module.setup("predict"), "path_outside_dataset", "scan.nii.gz")


def test_test_cases_must_be_cases(tmp_path: Path) -> None:
    root = msd(tmp_path / "msd")
    assert_flagged(lambda: _module(root, tmp_path, test_cases=["case_404"]).prepare_data(), "test_cases", "case_404")


def test_fit_refuses_duplicate_case(tmp_path: Path) -> None:
    root = msd(tmp_path / "msd")
    edit_json(root / "dataset.json", _training(lambda t: [*t, t[0]]))
    assert_flagged(lambda: _module(root, tmp_path).prepare_data(), "duplicate_case", "dataset.json")
