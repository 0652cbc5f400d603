"""Slice classification data: the three sources, the slice label rule, hemispheres, patient-wise folds, errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medlight.data import ClassificationDataModule, VolumeSlices
from medlight.errors import ConfigError, DatasetError
from tests.conftest import save_nifti

SHAPE = (16, 12, 6)  # x (split into hemispheres), y, slices


def make_case_folders(root: Path, n: int = 4) -> Path:
    """Case folders with two channels, a brain mask (x 2..13) and a tumour in the low-x half, slices 2-3."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("train" if i % 2 else "test") / f"pat{i}"
        brain = np.zeros(SHAPE, np.uint8)
        brain[2:14, 1:11, :] = 1
        label = np.zeros(SHAPE, np.uint8)
        label[3:7, 3:8, 2:4] = 2 if i % 2 else 4
        for name in ("flair.nii.gz", "t1c.nii.gz"):
            save_nifti((rng.normal(0, 1, SHAPE) * brain).astype(np.float32), folder / name)
        save_nifti(label, folder / "seg.nii.gz")
        save_nifti(brain, folder / "brain.nii.gz")
    return root


def volume_module(root: Path, tmp_path: Path, **kw) -> ClassificationDataModule:
    spec = VolumeSlices(
        str(root), ["flair.nii.gz", "t1c.nii.gz"], "seg.nii.gz", "brain.nii.gz", mask="file",
        min_positive_pixels=4, min_mask_pixels=1, hemispheres=True, **kw,
    )  # fmt: skip
    dm = ClassificationDataModule(volumes=spec, image_size=(8, 12), split_file=str(tmp_path / "s.json"), num_folds=2)
    dm.setup("fit")
    return dm


def test_volume_slices_hemispheres_and_label_rule(tmp_path: Path) -> None:
    dm = volume_module(make_case_folders(tmp_path / "vols"), tmp_path)
    assert dm.case_ids == [f"pat{i}_{h}" for i in range(4) for h in "AB"]
    assert len(dm.items) == 8 * SHAPE[2]
    for item in dm.items:
        assert item["image"].shape == (2, 8, 12) and item["mask"].shape == (1, 8, 12) and item["has_mask"]
        positive = item["unit"].endswith("_A") and item["slice_index"] in (2, 3)  # the tumour is at x 3..6 < 8
        assert item["label"] == int(positive)
        assert float(item["mask"].min()) >= 0 and float(item["mask"].max()) <= 1
    # inside the brain mask each channel is z-scored over the whole volume
    brain = [it for it in dm.items if it["unit"] == "pat0_A"]
    assert abs(float(torch.stack([it["image"] for it in brain]).mean())) < 1.0


def test_positive_labels_select_label_values(tmp_path: Path) -> None:
    dm = volume_module(make_case_folders(tmp_path / "vols"), tmp_path, positive_labels=[4])
    positives = {it["unit"] for it in dm.items if it["label"] == 1}
    assert positives == {"pat0_A", "pat2_A"}  # cases 0 and 2 have label 4, cases 1 and 3 label 2


def test_folds_are_patient_wise(tmp_path: Path) -> None:
    dm = volume_module(make_case_folders(tmp_path / "vols", n=6), tmp_path)
    assert dm.splits is not None
    seen: dict[str, int] = {}
    for fold, ids in enumerate(dm.splits.folds):
        for unit in ids:
            patient = unit.rsplit("_", 1)[0]
            assert seen.setdefault(patient, fold) == fold, f"{patient} is in two folds"
    for fold in range(2):
        dm.fold = fold
        train = {it["unit"].rsplit("_", 1)[0] for it in dm.stage_items("train")}
        test = {it["unit"].rsplit("_", 1)[0] for it in dm.stage_items("test")}
        assert train and test and not train & test
        assert dm.stage_ids("test") == dm.stage_ids("val")  # cross-validation tests on the held-out fold


def write_png(path: Path, value: int, shape: tuple = (10, 14)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full(shape, value, np.uint8)
    pixels[: shape[0] // 2] = 255 - value
    Image.fromarray(pixels).save(path)
    return path


def test_csv_source_with_masks(tmp_path: Path) -> None:
    rows = ["path,label,patient,mask"]
    for p in range(4):
        for s in range(2):
            write_png(tmp_path / "img" / f"p{p}_{s}.png", 40 * s)
            write_png(tmp_path / "mask" / f"p{p}_{s}.png", 0 if s else 255)
            rows.append(f"img/p{p}_{s}.png,{'covid' if p % 2 else 'other'},p{p},mask/p{p}_{s}.png")
    (tmp_path / "slices.csv").write_text("\n".join(rows) + "\n")
    dm = ClassificationDataModule(csv=str(tmp_path / "slices.csv"), image_size=(8, 8), num_folds=2)
    dm.setup("fit")
    assert dm.class_names == ["covid", "other"] and dm.case_ids == ["p0", "p1", "p2", "p3"]
    assert [it["label"] for it in dm.items if it["unit"] == "p1"] == [0, 0]
    assert (tmp_path / "splits_classification.json").is_file()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape[1:] == (1, 8, 8) and batch["mask"].shape[1:] == (1, 8, 8)


def test_image_folder_source(tmp_path: Path) -> None:
    for cls, value in (("normal", 10), ("pneumonia", 200)):
        for p in range(3):
            write_png(tmp_path / "imgs" / cls / f"{cls}{p}_slice{p}.png", value)
    dm = ClassificationDataModule(image_folder=str(tmp_path / "imgs"), image_size=(6, 6), num_folds=2)
    dm.setup("fit")
    assert dm.class_names == ["normal", "pneumonia"] and len(dm.case_ids) == 6
    assert not any(it["has_mask"] for it in dm.items)


def test_bad_input_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("path,label\nx.png,0\n")
    with pytest.raises(DatasetError, match=r"a\.csv: missing column"):
        ClassificationDataModule(csv=str(tmp_path / "a.csv")).setup("fit")
    (tmp_path / "b.csv").write_text("path,label,patient\nmissing.png,0,p0\n")
    with pytest.raises(DatasetError, match=r"missing\.png: file not found"):
        ClassificationDataModule(csv=str(tmp_path / "b.csv"), class_names=["a", "b"]).setup("fit")
    write_png(tmp_path / "ok.png", 3)
    (tmp_path / "c.csv").write_text("path,label,patient\nok.png,sick,p0\n")
    with pytest.raises(DatasetError, match=r"c\.csv line 2: label 'sick'"):
        ClassificationDataModule(csv=str(tmp_path / "c.csv"), class_names=["a", "b"]).setup("fit")
    root = make_case_folders(tmp_path / "vols", n=2)
    save_nifti(np.zeros((5, 5, 5), np.uint8), root / "test" / "pat0" / "brain.nii.gz")
    with pytest.raises(DatasetError, match=r"pat0/brain\.nii\.gz: shape"):
        volume_module(root, tmp_path)
    with pytest.raises(ConfigError, match="exactly one"):
        ClassificationDataModule()
