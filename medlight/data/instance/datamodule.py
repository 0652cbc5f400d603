"""Data module for 2D instance segmentation (each object its own integer id in a label map).

Two sources (see :mod:`medlight.data.instance.sources`):

* ``source: folder``: ``<dataset>/images`` and ``<dataset>/instances`` (PNG or 2D NIfTI) pairs;
* ``source: volumes``: per-slice connected components of label groups of a 3D semantic dataset, e.g. the
  enhancing tumour of BraTS (separate blobs in many slices) or the two hippocampus parts.

Training draws patches (foreground-biased), flips/rotates them and turns each instance map into the
foreground / boundary / centre-ness targets of :func:`medlight.ops.instances.instance_targets`. Evaluation
gives whole slices, one per batch; every slice is one case of the per-case metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from monai.data import Dataset as MonaiDataset
from monai.transforms import (
    Compose,
    MapTransform,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotate90d,
    SpatialPadd,
)
from torch.utils.data import DataLoader

from medlight.contracts import InstanceSpec
from medlight.data.base import MedlightDataModule
from medlight.data.instance.sources import InstanceSlice, derive_from_volume, read_folder, volume_files
from medlight.data.splits import Splits, load_or_create_splits
from medlight.errors import ConfigError, DatasetError
from medlight.keys import Key
from medlight.ops.instances import instance_targets


class InstanceTargetsd(MapTransform):
    """Add ``targets`` (3, H, W): foreground, boundary and centre-ness of the (1, H, W) instance map."""

    def __init__(self) -> None:
        super().__init__([Key.INSTANCES])

    def __call__(self, data: dict) -> dict:
        out = dict(data)
        instances = np.asarray(out[Key.INSTANCES])[0]
        out[Key.TARGETS] = torch.from_numpy(instance_targets(instances.astype(np.int32)))
        return out


class InstanceDataModule(MedlightDataModule):
    """2D instance examples, split by volume (a volume's slices never cross splits).

    Args:
        dataset: dataset folder.
        source: ``folder`` (image + instance map pairs) or ``volumes`` (per-slice components of 3D labels).
        groups: with ``volumes``, label-value groups whose components are objects, e.g. ``[[4]]``.
        label_file: with ``volumes``, the label file name inside BraTS-style case folders (None: the
            dataset layouts of :func:`medlight.data.datalist.discover`).
        image_files: with ``label_file``, the image file names (channels) inside each case folder.
        slice_axis: volume axis that is sliced.
        min_size: smallest object kept, in pixels.
        split_file: split file, created on first use; default ``<dataset>/instance_splits.json``.
        num_folds: number of folds; fold: validation fold; split_seed: seed of the split.
        test_fraction: share of volumes held out for testing.
        patch_size: training patch (H, W).
        batch_size: training patches per batch.
        pos_fraction: share of patches centred on an object.
        num_workers: loader workers.
        seed: seed of sampling order and augmentation.
    """

    def __init__(
        self,
        dataset: str,
        source: Literal["folder", "volumes"] = "folder",
        groups: Sequence[Sequence[int]] = ((1,),),
        label_file: str | None = None,
        image_files: Sequence[str] = (),
        slice_axis: int = 2,
        min_size: int = 1,
        split_file: str | None = None,
        num_folds: int = 5,
        fold: int = 0,
        split_seed: int = 0,
        test_fraction: float = 0.2,
        patch_size: Sequence[int] = (64, 64),
        batch_size: int = 8,
        pos_fraction: float = 0.8,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, "none", None)
        self.dataset = Path(dataset)
        self.source, self.groups, self.label_file = source, [list(g) for g in groups], label_file
        self.image_files, self.slice_axis, self.min_size = list(image_files), slice_axis, min_size
        self.split_file = Path(split_file) if split_file else self.dataset / "instance_splits.json"
        self.num_folds, self.fold, self.split_seed, self.test_fraction = num_folds, fold, split_seed, test_fraction
        if len(patch_size) != 2:
            raise ConfigError(f"patch_size {tuple(patch_size)}: instance segmentation is 2D, give (H, W)")
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        self.pos_fraction = pos_fraction
        self.slices: list[InstanceSlice] | None = None
        self.splits: Splits | None = None
        self.case_ids: list[str] = []
        self._datasets: dict[str, MonaiDataset] = {}

    # -- reading and splitting --------------------------------------------------------------------------
    def _load(self) -> list[InstanceSlice]:
        if self.slices is not None:
            return self.slices
        if not self.dataset.is_dir():
            raise DatasetError(f"{self.dataset}: dataset folder not found")
        if self.source == "folder":
            slices = read_folder(self.dataset)
        else:
            slices = []
            for volume, images, label in volume_files(self.dataset, self.label_file, self.image_files):
                slices += derive_from_volume(volume, images, label, self.groups, self.slice_axis, self.min_size)
        if not slices:
            raise DatasetError(f"{self.dataset}: no slice holds an object of the label groups {self.groups}")
        volumes = sorted({s.volume for s in slices})
        self.splits = load_or_create_splits(
            self.split_file, volumes, self.num_folds, self.split_seed, self.test_fraction
        )
        self.slices = sorted(slices, key=lambda s: s.case_id)
        self.case_ids = [s.case_id for s in self.slices]
        return self.slices

    def prepare_data(self) -> None:
        self._load()

    @property
    def spec(self) -> InstanceSpec:
        return InstanceSpec(int(self._load()[0].image.shape[0]), self.patch_size)

    def items(self, volumes: Sequence[str]) -> list[dict]:
        """Data dicts of every slice of the given volumes."""
        wanted = set(volumes)
        return [
            {
                Key.IMAGE: torch.from_numpy(s.image),
                Key.INSTANCES: torch.from_numpy(s.instances[None]),
                Key.CASE_ID: s.case_id,
                Key.CASE_INDEX: i,
            }
            for i, s in enumerate(self._load())
            if s.volume in wanted
        ]

    # -- transforms ---------------------------------------------------------------------------------
    def train_random_transform(self) -> Compose:
        keys = [Key.IMAGE, Key.INSTANCES]
        return Compose(
            [
                SpatialPadd(keys, self.patch_size),
                RandCropByPosNegLabeld(
                    keys,
                    label_key=Key.INSTANCES,
                    spatial_size=self.patch_size,
                    num_samples=1,
                    pos=self.pos_fraction,
                    neg=1 - self.pos_fraction,
                    allow_smaller=True,
                ),
                RandFlipd(keys, prob=0.5, spatial_axis=0),
                RandFlipd(keys, prob=0.5, spatial_axis=1),
                RandRotate90d(keys, prob=0.5),
                InstanceTargetsd(),
            ]
        )

    # -- stages -------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self._load()
        splits = self.splits
        assert splits is not None
        wanted = {
            "train": (stage in ("fit", None), lambda: splits.train_ids(self.fold), self.train_share),
            # validation slices at test too: the task may tune its post-processing on them
            "val": (stage in ("fit", "validate", "test", None), lambda: splits.val_ids(self.fold), self.eval_share),
            "test": (
                stage in ("test", "predict", None),
                lambda: splits.test or splits.val_ids(self.fold),
                self.eval_share,
            ),
        }
        for name, (needed, ids, share) in wanted.items():
            if needed and name not in self._datasets:
                items = share(self.items(ids()))
                if not items:
                    raise DatasetError(
                        f"{self.dataset}: the {name} split of fold {self.fold} holds no slice "
                        f"with an object ({self.split_file})"
                    )
                self._datasets[name] = MonaiDataset(items)  # already in memory: nothing to cache

    def train_dataloader(self) -> DataLoader:
        return self.train_loader(self._datasets["train"], self.train_random_transform())

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self._datasets["val"])

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader(self._datasets["test"])

    def tuning_dataloader(self) -> DataLoader:
        """The validation slices, also set up for ``test``, to tune post-processing before the test."""
        return self.eval_loader(self._datasets["val"])

    def predict_dataloader(self) -> DataLoader:
        return self.eval_loader(self._datasets["test"])
