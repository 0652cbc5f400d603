"""nnU-Net interoperability: imagesTs/labelsTs as the test set, splits_final.json read and written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medlight.data import SegmentationDataModule
from medlight.data.nnunet import export_splits_final, load_splits_final, main
from medlight.errors import DatasetError
from medlight.keys import Key
from tests.conftest import make_nnunet_v2, save_nifti, synthetic_case


def with_test_folders(root: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(5)
    for i in range(n):
        image, label = synthetic_case((16, 16, 12), rng)
        for c in range(2):
            save_nifti(image + c, root / "imagesTs" / f"test_{i:03d}_{c:04d}.nii.gz")
        save_nifti(label, root / "labelsTs" / f"test_{i:03d}.nii.gz")
    return root


def make_dm(root: Path, **kw) -> SegmentationDataModule:
    return SegmentationDataModule(str(root), patch_size=(8, 8, 8), num_folds=3, cache="none", **kw)


def test_images_ts_and_labels_ts_are_the_held_out_test_set(tmp_path: Path) -> None:
    root = with_test_folders(make_nnunet_v2(tmp_path / "ds", n=6))
    dm = make_dm(root)
    dm.prepare_data()
    dm.setup("test")
    assert dm.splits.test == ["test_000", "test_001", "test_002"]
    assert sorted(c for fold in dm.splits.folds for c in fold) == [f"case_{i:03d}" for i in range(6)]
    assert json.loads(dm.split_file.read_text())["test_fraction"] == 0.0  # the folds cover imagesTr only
    batches = list(dm.test_dataloader())
    assert [b[Key.CASE_ID][0] for b in batches] == dm.splits.test
    assert batches[0][Key.IMAGE].shape[1] == 2 and Key.LABEL_ORIGINAL in batches[0]
    assert dm.spec.in_channels == 2


def test_images_ts_without_labels_is_not_a_test_set(tmp_path: Path) -> None:
    root = with_test_folders(make_nnunet_v2(tmp_path / "ds", n=6))
    shutil.rmtree(root / "labelsTs")
    dm = make_dm(root, test_fraction=0.34)
    dm.prepare_data()
    assert len(dm.splits.test) == 3 and all(c.startswith("case_") for c in dm.splits.test)


def test_splits_final_round_trip(tmp_path: Path) -> None:
    root = make_nnunet_v2(tmp_path / "ds", n=9)
    ours = make_dm(root, split_file=str(tmp_path / "splits.json"), test_fraction=0.0)
    ours.prepare_data()
    exported = export_splits_final(ours.split_file, root / "splits_final.json")
    content = json.loads(exported.read_text())
    assert [sorted(f["val"]) for f in content] == ours.splits.folds
    assert all(sorted(f["train"]) == sorted(ours.splits.train_ids(k)) for k, f in enumerate(content))
    theirs = make_dm(root)  # no split_file: splits_final.json beside dataset.json is used
    theirs.prepare_data()
    assert theirs.split_file == root / "splits_final.json"
    assert theirs.splits.folds == ours.splits.folds and theirs.splits.test == []
    assert main(["export", str(ours.split_file), str(tmp_path / "again.json")]) == 0
    assert json.loads((tmp_path / "again.json").read_text()) == content


def test_splits_final_with_images_ts(tmp_path: Path) -> None:
    root = with_test_folders(make_nnunet_v2(tmp_path / "ds", n=6))
    folds = [[f"case_{i:03d}" for i in range(k, 6, 3)] for k in range(3)]
    splits = [{"train": [c for j, f in enumerate(folds) if j != k for c in f], "val": v} for k, v in enumerate(folds)]
    (tmp_path / "nnunet_splits.json").write_text(json.dumps(splits))
    dm = make_dm(root, split_file=str(tmp_path / "nnunet_splits.json"))
    dm.prepare_data()
    assert dm.splits.folds == folds and dm.splits.test == ["test_000", "test_001", "test_002"]
    assert sorted(dm.splits.train_ids(1)) == sorted(folds[0] + folds[2])


def test_splits_final_errors(tmp_path: Path) -> None:
    ids = [f"c{i}" for i in range(6)]
    path = tmp_path / "splits_final.json"
    folds = [ids[0:2], ids[2:4], ids[4:6]]
    good = [{"train": [c for j, f in enumerate(folds) if j != k for c in f], "val": v} for k, v in enumerate(folds)]
    path.write_text(json.dumps(good))
    assert load_splits_final(path, ids, 3).folds == folds
    with pytest.raises(DatasetError, match="has 3 folds but the run asks for num_folds=5"):
        load_splits_final(path, ids, 5)
    with pytest.raises(DatasetError, match=r"1 case\(s\) in no fold \['c6'\]"):
        load_splits_final(path, [*ids, "c6"], 3)
    path.write_text(json.dumps([{**good[0], "train": good[0]["train"][:-1]}, *good[1:]]))
    with pytest.raises(DatasetError, match="fold 0's train cases are not the other folds' validation cases"):
        load_splits_final(path, ids, 3)
