"""Semi-supervised data: a saved labeled subset, an unlabeled stream without labels, voxel-aligned views."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from medlight.data import Augmentation, SemiSupervisedDataModule
from medlight.data.segmentation.semi_supervised import load_or_create_labeled_subset, unlabeled_views
from medlight.errors import ConfigError, DatasetError
from medlight.keys import Key
from tests.conftest import make_msd


def make_dm(root: Path, **kw) -> SemiSupervisedDataModule:
    kw.setdefault("split_file", str(root.parent / "splits.json"))
    kw.setdefault("patch_size", (16, 16, 16))
    kw.setdefault("num_folds", 3)
    kw.setdefault("cache", "none")
    kw.setdefault("labeled_fraction", 0.25)
    return SemiSupervisedDataModule(str(root), **kw)


def attach(dm: SemiSupervisedDataModule, semi: bool) -> None:
    """A stand-in trainer (rank 0 of 1); ``semi``: the data module yields the unlabeled stream or not."""
    dm.unlabeled = semi
    dm.trainer = SimpleNamespace(global_rank=0, world_size=1)  # type: ignore[assignment]


def test_labeled_subset_is_seeded_saved_and_checked_on_reuse(tmp_path: Path) -> None:
    ids = [f"c{i:02d}" for i in range(20)]
    path = tmp_path / "labeled.json"
    first = load_or_create_labeled_subset(path, ids, 0.1, seed=3)
    assert len(first.labeled) == 2 and sorted(first.labeled + first.unlabeled) == ids
    assert json.loads(path.read_text())["labeled"] == first.labeled
    again = load_or_create_labeled_subset(path, list(reversed(ids)), 0.1, seed=3)
    assert again.labeled == first.labeled and again.sha256 == first.sha256
    other = load_or_create_labeled_subset(tmp_path / "other.json", ids, 0.1, seed=4)
    assert other.labeled != first.labeled  # another seed draws other cases
    with pytest.raises(DatasetError, match="labeled.json.*labeled_fraction=0.1.*labeled_fraction=0.25"):
        load_or_create_labeled_subset(path, ids, 0.25, seed=3)
    with pytest.raises(DatasetError, match="labeled.json"):
        load_or_create_labeled_subset(path, ids[:-1], 0.1, seed=3)
    with pytest.raises(ConfigError):
        load_or_create_labeled_subset(tmp_path / "x.json", ids, 0.0, seed=3)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DatasetError, match="bad.json"):
        load_or_create_labeled_subset(tmp_path / "bad.json", ids, 0.1, seed=3)


def test_unlabeled_stream_never_carries_a_label(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "msd", n=12, shape=(20, 20, 16))
    dm = make_dm(root, batch_size=1, unlabeled_batch_size=2, samples_per_volume=2)
    dm.prepare_data()
    attach(dm, semi=True)  # as Lightning does: the trainer is attached before setup
    dm.setup("fit")
    subset = dm.labeled_subset()
    train = set(dm.splits.train_ids(0))
    assert set(subset.labeled) | set(subset.unlabeled) == train and not set(subset.labeled) & set(subset.unlabeled)
    assert len(subset.labeled) == 2 and dm.labeled_split_file.is_file()
    loader = dm.train_dataloader()
    seen_unlabeled, seen_labeled = set(), set()
    for batch, _, _ in loader:
        u, lab = batch["unlabeled"], batch["labeled"]
        assert "label" not in u and not any("label" in k for k in u)  # no label key of any kind
        assert u["image"].shape == u[Key.IMAGE_STRONG].shape == (4, 1, 16, 16, 16)
        assert lab["label"].shape == lab["image"].shape == (2, 1, 16, 16, 16)
        seen_unlabeled |= set(u["case_id"])
        seen_labeled |= set(lab["case_id"])
    assert seen_unlabeled == set(subset.unlabeled)  # one pass over the unlabeled cases is an epoch
    assert seen_labeled <= set(subset.labeled)
    assert not seen_unlabeled & set(subset.labeled)
    assert not seen_unlabeled & (set(dm.splits.val_ids(0)) | set(dm.splits.test))


def test_a_supervised_task_gets_the_labeled_cases_only(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "msd", n=12, shape=(20, 20, 16))
    dm = make_dm(root, batch_size=1)
    attach(dm, semi=False)  # as Lightning does: the trainer is attached before setup
    dm.setup("fit")
    ids = {cid for batch in dm.train_dataloader() for cid in batch["case_id"]}
    assert ids == set(dm.labeled_subset().labeled)


def test_all_labeled_leaves_nothing_for_a_semi_supervised_task(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "msd", n=8, shape=(20, 20, 16))
    dm = make_dm(root, labeled_fraction=1.0)
    attach(dm, semi=True)  # as Lightning does: the trainer is attached before setup
    dm.setup("fit")
    with pytest.raises(ConfigError, match="no unlabeled case"):
        dm.train_dataloader()


def views(strong: Augmentation, slice_axis: int | None = None) -> Compose:
    weak = Augmentation(flip_prob=0.5, rotate_prob=1.0, rotate_degrees=30, scale_prob=1.0, intensity_prob=0.0)
    patch = (12, 14) if slice_axis is not None else (12, 14, 10)
    return Compose(unlabeled_views(patch, 3, weak, strong, 2 if slice_axis is not None else 3, slice_axis))


def image() -> MetaTensor:
    return MetaTensor(torch.rand(1, 16, 18, 12) * 10 + torch.arange(16.0)[None, :, None, None])


@pytest.mark.parametrize("slice_axis", [None, 2])
def test_views_are_voxel_aligned(slice_axis: int | None) -> None:
    # no strong perturbation: the student's view is exactly the teacher's, after random geometric augmentation
    t = views(Augmentation(flip_prob=0.0, intensity_prob=0.0, noise_prob=0.0), slice_axis)
    t.set_random_state(seed=1)
    for out in t({"image": image()}):
        assert torch.equal(out["image"].as_tensor(), out[Key.IMAGE_STRONG].as_tensor())
    # scale and shift always on: the strong view is a * weak + b voxel for voxel (same geometry, new intensities)
    t = views(Augmentation(flip_prob=0.0, intensity_prob=1.0, noise_prob=0.0), slice_axis)
    t.set_random_state(seed=2)
    for out in t({"image": image()}):
        w, s = out["image"].as_tensor().flatten(), out[Key.IMAGE_STRONG].as_tensor().flatten()
        assert not torch.equal(w, s)
        a, b = torch.linalg.lstsq(torch.stack([w, torch.ones_like(w)], 1), s[:, None]).solution[:, 0]
        assert torch.allclose(a * w + b, s, atol=1e-4)


def test_geometric_augmentation_really_moves_voxels() -> None:
    # guards the alignment test: without augmentation both crops of one seed agree, with it they differ
    strong = Augmentation(flip_prob=0.0, intensity_prob=0.0, noise_prob=0.0)
    plain = Compose(unlabeled_views((12, 14, 10), 1, Augmentation(flip_prob=0.0, intensity_prob=0.0), strong, 3))
    moved = views(strong)
    img = image()
    plain.set_random_state(seed=5)
    moved.set_random_state(seed=5)
    assert not torch.allclose(plain({"image": img})[0]["image"], moved({"image": img})[0]["image"])
