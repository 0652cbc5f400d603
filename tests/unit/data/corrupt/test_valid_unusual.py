"""Valid data sets with unusual but legitimate features: none may raise an error (no false alarms)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from medlight.data.classification import ClassificationDataModule
from medlight.data.datalist import discover, discover_images
from medlight.data.segmentation import Preprocessing, SegmentationDataModule
from medlight.data.splits import load_or_create_splits
from tests.conftest import LABELS, save_nifti
from tests.unit.data.corrupt.helpers import (
    assert_clean,
    check,
    edit_json,
    folders,
    msd,
    nifti,
    nnunet_v2,
    patch_header,
    png,
    rewrite,
)
from tests.unit.data.corrupt.test_other_inputs import IDS, K, h5, images, read_all, split


def _renamed(root: Path, names: list[str]) -> Path:
    for folder in ("imagesTr", "labelsTr"):
        for old, new in zip(sorted((root / folder).iterdir()), names):
            old.rename(root / folder / f"{new}.nii.gz")
    return root


def digit_names(tmp: Path) -> Callable[[], object]:
    root = _renamed(folders(tmp / "d"), ["patient_0001", "patient_0002", "patient_0003"])
    assert discover(root).case_ids == ["patient_0001", "patient_0002", "patient_0003"]
    return lambda: check(root, LABELS)


def digit_names_from_zero(tmp: Path) -> Callable[[], object]:
    root = _renamed(folders(tmp / "d"), ["patient_0000", "patient_0001", "patient_0002"])
    assert len(discover(root).cases) == 3  # labels named after whole file names: not channels
    return lambda: check(root, LABELS)


def digit_names_to_predict(tmp: Path) -> Callable[[], object]:
    root = _renamed(folders(tmp / "d"), ["patient_0001", "patient_0002", "patient_0003"])
    return lambda: [c.images for c in discover_images(root)] and []


def channel_pattern_folder(tmp: Path) -> Callable[[], object]:
    root = nnunet_v2(tmp / "v2")
    (root / "dataset.json").unlink()
    assert {len(c.images) for c in discover(root).cases} == {2}
    return lambda: check(root, LABELS)


def png_0_255(tmp: Path) -> Callable[[], object]:
    root = png(tmp / "png")
    for mask in (root / "masks").iterdir():
        Image.fromarray(((np.asarray(Image.open(mask)) > 0) * 255).astype(np.uint8)).save(mask)
    return lambda: check(root, {0: "background", 1: "lesion"}, label_map={255: 1})


def png_0_255_data_module(tmp: Path) -> Callable[[], object]:
    root = png(tmp / "png")
    for mask in (root / "masks").iterdir():
        Image.fromarray(((np.asarray(Image.open(mask)) > 0) * 255).astype(np.uint8)).save(mask)
    module = SegmentationDataModule(
        str(root),
        labels={0: "background", 1: "lesion"},
        num_folds=2,
        test_fraction=0.0,
        patch_size=(8, 8),
        preprocessing=Preprocessing(label_map={255: 1}),
    )
    return lambda: module.prepare_data()


def rgb_png(tmp: Path) -> Callable[[], object]:
    root = png(tmp / "png")
    for image in (root / "images").iterdir():
        Image.open(image).convert("RGB").save(image)
    return lambda: check(root, LABELS)


def nnunet_style_labels(tmp: Path) -> Callable[[], object]:
    root = folders(tmp / "f")
    return lambda: check(root, {"background": 0, "ball": 1, "box": 2})


def msd_multichannel_4d(tmp: Path) -> Callable[[], object]:
    root = msd(tmp / "m")
    for image in (root / "imagesTr").iterdir():
        rewrite(image, np.stack([nifti(image)[0]] * 2, -1))
    edit_json(root / "dataset.json", lambda s: {**s, "modality": {"0": "T1", "1": "T2"}})
    return lambda: check(root)


def msd_channel_files(tmp: Path) -> Callable[[], object]:
    root = msd(tmp / "m")
    for image in sorted((root / "imagesTr").iterdir()):
        for c in range(2):
            shutil.copy(image, image.with_name(image.name.replace(".nii.gz", f"_{c:04d}.nii.gz")))
        image.unlink()
    edit_json(root / "dataset.json", lambda s: {**s, "modality": {"0": "T1", "1": "T2"}})
    return lambda: check(root)


def uncompressed_nifti(tmp: Path) -> Callable[[], object]:
    root = msd(tmp / "m")
    for folder in ("imagesTr", "labelsTr"):
        for path in (root / folder).iterdir():
            array, affine = nifti(path)
            path.unlink()
            save_nifti(array, path.with_name(path.name.replace(".gz", "")))
    edit_json(root / "dataset.json", lambda s: json.loads(json.dumps(s).replace(".nii.gz", ".nii")))
    return lambda: check(root)


def scaling_variants(tmp: Path) -> Callable[[], object]:
    root = msd(tmp / "m")
    paths = sorted((root / "imagesTr").iterdir())
    patch_header(paths[0], scl_slope=0.0)  # NIfTI: 0 means no scaling
    patch_header(paths[1], scl_slope=2.0, scl_inter=-1.0)
    patch_header(paths[2], scl_slope=np.nan, scl_inter=np.nan)  # what nibabel writes
    return lambda: check(root)


def anisotropic_spacing(tmp: Path) -> Callable[[], object]:
    root = msd(tmp / "m")
    for folder in ("imagesTr", "labelsTr"):
        for path in (root / folder).iterdir():
            rewrite(path, nifti(path)[0], np.diag([0.4, 0.4, 5.0, 1.0]))
    return lambda: check(root)


def integer_image_float_label(tmp: Path) -> Callable[[], object]:
    root = msd(tmp / "m")
    for path in (root / "imagesTr").iterdir():
        rewrite(path, nifti(path)[0].astype(np.int16))
    for path in (root / "labelsTr").iterdir():
        rewrite(path, nifti(path)[0].astype(np.float32))
    return lambda: check(root)


def symlink_inside(tmp: Path) -> Callable[[], object]:
    root = folders(tmp / "f")
    target = root / "store" / "case_001.nii.gz"
    target.parent.mkdir()
    (root / "imagesTr" / "case_001.nii.gz").rename(target)
    (root / "imagesTr" / "case_001.nii.gz").symlink_to(target)
    return lambda: check(root, LABELS)


def dotdot_staying_inside(tmp: Path) -> Callable[[], object]:
    root = msd(tmp / "m")
    edit_json(
        root / "dataset.json", lambda s: json.loads(json.dumps(s).replace("./imagesTr/", "./labelsTr/../imagesTr/"))
    )
    return lambda: check(root)


def kspace_single_coil_and_mat_and_npy(tmp: Path) -> Callable[[], object]:
    root = tmp / "ks"
    h5(root / "single.h5", kspace=K[:, 0], reconstruction_rss=np.abs(K[:, 0]).astype(np.float32))
    h5(root / "Center02" / "cine_lax.mat", kspace_full=K)
    np.save(root / "volume.npy", K)
    with h5py.File(root / "compressed.h5", "w") as f:
        f.create_dataset("kspace", data=np.ones((2, 2, 64, 64), np.complex64), compression="gzip")
    return lambda: read_all(root) and []


def kspace_list_with_dotdot_inside(tmp: Path) -> Callable[[], object]:
    root = tmp / "ks"
    h5(root / "sub" / "a.h5", kspace=K)
    entry = {"file": "sub/../sub/a.h5", "center": "c", "protocol": "p"}
    (root / "dataset.json").write_text(json.dumps({"cases": [entry]}))
    return lambda: read_all(root) and []


def classification_rgb_folders(tmp: Path) -> Callable[[], object]:
    images(tmp / "f" / "cat", mode="RGB")
    images(tmp / "f" / "dog", mode="RGB")
    module = ClassificationDataModule(image_folder=str(tmp / "f"), num_folds=2, image_size=(8, 8))
    return lambda: module.prepare_data()


def classification_csv_with_masks(tmp: Path) -> Callable[[], object]:
    root = images(tmp / "cls")
    rows = "".join(f"p{i}_s.png,{i % 2},p{i},p{i}_s.png\n" for i in range(6))
    (root / "slices.csv").write_text("path,label,patient,mask\n" + rows)
    module = ClassificationDataModule(csv=str(root / "slices.csv"), num_folds=2, image_size=(8, 8))
    return lambda: module.prepare_data()


def hand_written_split(tmp: Path) -> Callable[[], object]:
    (tmp / "splits.json").write_text(json.dumps(split()))
    return lambda: load_or_create_splits(tmp / "splits.json", IDS, 2, 0, 0.2) and []


def split_without_test(tmp: Path) -> Callable[[], object]:
    return lambda: load_or_create_splits(tmp / "splits.json", IDS, 3, 0, 0.0) and []


def explicit_test_cases(tmp: Path) -> Callable[[], object]:
    root = msd(tmp / "m")
    module = SegmentationDataModule(str(root), num_folds=2, test_cases=["case_002"], patch_size=(8, 8, 6))

    def run() -> list:
        module.prepare_data()
        assert module.splits is not None and module.splits.test == ["case_002"]
        again = load_or_create_splits(root / "splits.json", module.case_ids, 2, 0, 0.2, test_cases=["case_002"])
        assert again.test == ["case_002"] and sorted(sum(again.folds, [])) == ["case_000", "case_001"]
        return []

    return run


VALID = {f.__name__: f for f in [
    digit_names, digit_names_from_zero, digit_names_to_predict, channel_pattern_folder, png_0_255,
    png_0_255_data_module, rgb_png, nnunet_style_labels, msd_multichannel_4d, msd_channel_files, uncompressed_nifti,
    scaling_variants, anisotropic_spacing, integer_image_float_label, symlink_inside, dotdot_staying_inside,
    kspace_single_coil_and_mat_and_npy, kspace_list_with_dotdot_inside, classification_rgb_folders,
    classification_csv_with_masks, hand_written_split, split_without_test, explicit_test_cases,
]}  # fmt: skip


@pytest.mark.parametrize("variant", sorted(VALID))
def test_valid_but_unusual(tmp_path: Path, variant: str) -> None:
    assert_clean(VALID[variant](tmp_path))
