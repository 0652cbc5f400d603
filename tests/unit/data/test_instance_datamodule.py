"""Instance data: folder pairs, per-slice components of 3D labels, training targets, bad input."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medlight.data.instance.datamodule import InstanceDataModule
from medlight.data.instance.sources import derive_from_volume, read_folder
from medlight.errors import DatasetError
from medlight.keys import Key


def two_touching_discs(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An image with two discs that touch (ids 1 and 2) and its instance map."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = rng.integers(8, shape[0] - 16), rng.integers(8, shape[1] - 24)
    instances = np.zeros(shape, np.uint8)
    instances[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] = 1
    instances[((yy - cy) ** 2 + (xx - cx - 11) ** 2 < 36) & (instances == 0)] = 2
    image = 60 + 120 * (instances > 0) + rng.normal(0, 5, shape)
    return np.clip(image, 0, 255).astype(np.uint8), instances


def make_instance_folder(root: Path, n: int = 6, shape: tuple[int, int] = (32, 40)) -> Path:
    """images/ + instances/ PNG pairs of touching discs."""
    rng = np.random.default_rng(0)
    for sub in ("images", "instances"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, instances = two_touching_discs(shape, rng)
        Image.fromarray(image).save(root / "images" / f"cell_{i:02d}.png")
        Image.fromarray(instances).save(root / "instances" / f"cell_{i:02d}.png")
    return root


def test_folder_pairs_are_read_with_their_objects(tmp_path: Path) -> None:
    slices = read_folder(make_instance_folder(tmp_path / "cells", n=3))
    assert [s.case_id for s in slices] == ["cell_00", "cell_01", "cell_02"]
    assert slices[0].image.shape == (1, 32, 40) and slices[0].instances.shape == (32, 40)
    assert set(np.unique(slices[0].instances)) == {0, 1, 2}
    assert abs(float(slices[0].image.mean())) < 1e-4  # z-scored


def test_bad_folder_input_names_the_file(tmp_path: Path) -> None:
    root = make_instance_folder(tmp_path / "cells", n=2)
    (root / "instances" / "cell_01.png").unlink()
    with pytest.raises(DatasetError, match="cell_01.png: no instance map"):
        read_folder(root)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "instances" / "cell_01.png")
    with pytest.raises(DatasetError, match=r"cell_01.png: size \(32, 40\) differs"):
        read_folder(root)
    nib.save(nib.Nifti1Image(np.zeros((32, 40), np.float32), np.eye(4)), str(root / "instances" / "cell_00.nii.gz"))
    (root / "instances" / "cell_00.png").unlink()
    with pytest.raises(DatasetError, match="cell_00.nii.gz: an instance map must be a 2D integer image"):
        read_folder(root)


def test_label_groups_of_a_volume_become_separate_objects(tmp_path: Path) -> None:
    labels = np.zeros((12, 10, 3), np.uint8)
    labels[2:5, 2:5, 0] = 1  # slice 0: a part-1 blob touching a part-2 blob, and a second part-1 blob
    labels[5:8, 2:5, 0] = 2
    labels[2:4, 7:9, 0] = 1
    labels[4:6, 4:6, 2] = 2  # slice 2: one object; slice 1 holds none and is left out
    image = np.ones(labels.shape, np.float32)
    for name, array in (("img", image), ("lab", labels)):
        nib.save(nib.Nifti1Image(array, np.eye(4)), str(tmp_path / f"{name}.nii.gz"))
    slices = derive_from_volume("v", [tmp_path / "img.nii.gz"], tmp_path / "lab.nii.gz", [[1], [2]])
    assert [s.case_id for s in slices] == ["v_s000", "v_s002"]
    assert len(np.unique(slices[0].instances)) == 4  # background + two part-1 blobs + the touching part-2 blob
    merged = derive_from_volume("v", [tmp_path / "img.nii.gz"], tmp_path / "lab.nii.gz", [[1, 2]])
    assert len(np.unique(merged[0].instances)) == 3  # one group: the touching blobs merge


def test_datamodule_splits_by_volume_and_gives_targets(tmp_path: Path) -> None:
    root = make_instance_folder(tmp_path / "cells", n=10)
    dm = InstanceDataModule(str(root), patch_size=(24, 24), batch_size=4, num_folds=2, test_fraction=0.2)
    dm.setup("fit")
    dm.setup("test")
    assert dm.spec.in_channels == 1
    sizes = {name: len(ds) for name, ds in dm._datasets.items()}  # type: ignore[arg-type]
    assert sizes == {"train": 4, "val": 4, "test": 2}
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["image"].shape) == (4, 1, 24, 24)
    targets = batch[Key.TARGETS]
    assert tuple(targets.shape) == (4, 3, 24, 24)
    assert float(targets[:, 1].sum()) > 0 and float(targets[:, 2].max()) == 1.0  # boundary and centre present
    assert bool(((targets[:, 1:] > 0) <= (targets[:, :1] > 0)).all())  # boundary/centre lie on foreground
    case = next(iter(dm.test_dataloader()))
    assert tuple(case["instances"].shape) == (1, 1, 32, 40)


def test_missing_dataset_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nowhere: dataset folder not found"):
        InstanceDataModule(str(tmp_path / "nowhere")).setup("fit")
