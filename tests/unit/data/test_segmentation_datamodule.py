from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from medlight.data import Augmentation, Preprocessing, SegmentationDataModule
from medlight.errors import ConfigError, DataIntegrityError, DatasetError
from medlight.keys import Key
from tests.conftest import make_msd, save_nifti


def make_dm(root: Path, **kw) -> SegmentationDataModule:
    kw.setdefault("split_file", str(root.parent / "splits.json"))
    kw.setdefault("patch_size", (16, 16, 16))
    kw.setdefault("num_folds", 3)
    kw.setdefault("cache", "none")
    return SegmentationDataModule(str(root), **kw)


def test_3d_patches_and_whole_volume_evaluation(msd_dataset: Path) -> None:
    dm = make_dm(msd_dataset, batch_size=2, samples_per_volume=2)
    dm.prepare_data()
    dm.setup("fit")
    spec = dm.spec
    assert spec.class_names == ["ball", "box"] and spec.in_channels == 1 and spec.spatial_dims == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 16, 16, 16)  # 2 volumes x 2 patches
    assert batch["label"].shape == (4, 1, 16, 16, 16)
    assert set(torch.unique(batch["label"]).tolist()) <= {0.0, 1.0, 2.0}
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (1, 1, 20, 24, 16)  # whole volume, no crop
    dm.setup("test")
    test = next(iter(dm.test_dataloader()))
    assert Key.LABEL_ORIGINAL in test and test[Key.LABEL_ORIGINAL].shape == (1, 1, 20, 24, 16)
    assert set(dm.splits.test).isdisjoint(dm.splits.train_ids(0))


def test_2d_slice_mode_from_volumes(msd_dataset: Path) -> None:
    dm = make_dm(msd_dataset, patch_size=(16, 16), slice_axis=2, batch_size=3)
    dm.setup("fit")
    assert dm.spec.spatial_dims == 2 and dm.spec.slice_axis == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (3, 1, 16, 16)


def test_2d_png_dataset(dataset_factory) -> None:
    root = dataset_factory("png")
    dm = make_dm(root, labels={0: "bg", 1: "ball", 2: "box"}, patch_size=(32, 32), batch_size=2)
    dm.setup("fit")
    assert dm.spec.spatial_dims == 2 and dm.spec.in_channels == 1
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 1, 32, 32)


def test_multichannel_nnunet_v2(dataset_factory) -> None:
    dm = make_dm(dataset_factory("nnunet_v2", channels=2), patch_size=(8, 8, 8), num_folds=2)
    dm.setup("fit")
    assert dm.spec.in_channels == 2
    assert next(iter(dm.train_dataloader()))["image"].shape[1] == 2


def test_bad_dataset_is_refused_with_the_full_report(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "bad", n=8)
    save_nifti(torch.zeros(5, 5, 5).numpy(), root / "labelsTr" / "case_001.nii.gz")
    (root / "imagesTr" / "case_002.nii.gz").write_bytes(b"garbage")
    with pytest.raises(DataIntegrityError) as err:
        make_dm(root).setup("fit")
    message = str(err.value)
    assert "case_001" in message and "shape_mismatch" in message
    assert "case_002" in message and "unreadable" in message
    assert "skip_bad_cases" in message


def test_skip_bad_cases_warns_naming_each(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "bad", n=8)
    (root / "imagesTr" / "case_002.nii.gz").write_bytes(b"garbage")
    dm = make_dm(root, skip_bad_cases=True)
    with pytest.warns(UserWarning, match="Leaving out 1 bad case\\(s\\): case_002"):
        dm.setup("fit")
    assert "case_002" not in dm.case_ids
    used = [item["case_id"] for item in dm._datasets["train"].data] + [i["case_id"] for i in dm._datasets["val"].data]
    assert "case_002" not in used


def test_skip_bad_cases_that_leaves_a_part_empty_says_so(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "bad", n=8)
    dm = make_dm(root, skip_bad_cases=True)
    dm.prepare_data()
    assert dm.splits is not None
    for case_id in dm.splits.val_ids(0):  # every validation case of fold 0 unreadable
        (root / "imagesTr" / f"{case_id}.nii.gz").write_bytes(b"garbage")
    dm = make_dm(root, skip_bad_cases=True)
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="no validation case left in fold 0"):
        dm.setup("fit")


def test_wrong_patch_size_is_a_config_error(msd_dataset: Path) -> None:
    with pytest.raises(ConfigError, match="patch_size"):
        make_dm(msd_dataset, patch_size=(16, 16)).setup("fit")


def test_each_rank_caches_only_its_share(msd_dataset: Path) -> None:
    shares = {}
    for rank in range(2):
        dm = make_dm(msd_dataset)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2, current_epoch=0)  # type: ignore[assignment]
        dm.setup("fit")
        shares[rank] = (dm._datasets["train"].data, dm._datasets["val"].data)
    train0, val0 = ([i["case_id"] for i in part] for part in shares[0])
    train1, val1 = ([i["case_id"] for i in part] for part in shares[1])
    assert len(train0) == len(train1)  # equal steps on every rank
    assert set(val0).isdisjoint(val1)  # every validation case scored once
    dm = make_dm(msd_dataset)
    dm.setup("fit")
    assert sorted(val0 + val1) == sorted(i["case_id"] for i in dm._datasets["val"].data)


def test_more_processes_than_test_cases_is_a_clear_error(msd_dataset: Path) -> None:
    dm = make_dm(msd_dataset)
    dm.setup("fit")
    cases = len(dm.splits.test or dm.splits.val_ids(dm.fold))  # type: ignore[union-attr]
    dm = make_dm(msd_dataset)
    dm.trainer = SimpleNamespace(global_rank=0, world_size=cases + 1, current_epoch=0)  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=rf"{cases} test case\(s\) for {cases + 1} processes.*--trainer.devices"):
        dm.setup("test")


def test_preprocessing_options(msd_dataset: Path) -> None:
    dm = make_dm(
        msd_dataset,
        preprocessing=Preprocessing(spacing=(2.0, 2.0, 2.0), crop_foreground=True),
        augmentation=Augmentation(rotate_prob=1.0, scale_prob=1.0, elastic_prob=1.0, gamma_prob=1.0),
        patch_size=(8, 8, 8),
    )
    dm.setup("fit")
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[2:] == (10, 12, 8)  # resampled to 2 mm
    assert next(iter(dm.train_dataloader()))["image"].shape[2:] == (8, 8, 8)
    image = val["image"][0, 0]
    assert abs(float(image.mean())) < 0.1 and abs(float(image.std()) - 1) < 0.1  # z-scored
