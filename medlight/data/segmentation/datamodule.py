"""Data module for supervised segmentation of volumes (3D patches or 2D slices) and 2D images."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd
from torch import Tensor
from torch.utils.data import DataLoader

from medlight.contracts import SegmentationSpec
from medlight.data.base import CacheMode, MedlightDataModule
from medlight.data.datalist import Case, DatasetDescription, discover, discover_images
from medlight.data.integrity import bad_case_ids, check_dataset, read_volume
from medlight.data.nnunet import held_out_description, is_splits_final, load_splits_final, split_file_of
from medlight.data.problems import format_report
from medlight.data.segmentation.transforms import (
    Augmentation,
    Preprocessing,
    geometric_augmentation,
    intensity_augmentation,
    load_and_preprocess,
    patch_sampling,
)
from medlight.data.splits import Splits, load_or_create_splits
from medlight.errors import ConfigError, DataIntegrityError, DatasetError
from medlight.keys import Key

log = logging.getLogger(__name__)


class SegmentationDataModule(MedlightDataModule):
    """Cases from a dataset folder, split into folds, preprocessed by MONAI transforms and cached.

    Every case is checked once (see :mod:`medlight.data.integrity`); ``fit`` refuses a dataset with errors
    unless ``skip_bad_cases`` is set, in which case each bad case is named in a warning and left out.

    Args:
        dataset: dataset folder (dataset.json, or image/label folders; see :mod:`medlight.data.datalist`).
        split_file: split file to create on first use and reuse; default ``<dataset>/splits.json``, or nnU-Net's
            ``splits_final.json`` when it lies beside dataset.json (one is read when given too).
        labels: label value -> name, for folder layouts whose labels nothing declares.
        num_folds: number of cross-validation folds.
        fold: validation fold of this run.
        split_seed: seed of the split.
        test_fraction: share of cases held out for testing; unused with ``test_cases``, and 0 when the dataset has
            nnU-Net's ``imagesTs``/``labelsTs``, whose cases are then the test set (:mod:`medlight.data.nnunet`).
        test_cases: explicit held-out case ids (instead of a random ``test_fraction``); the split file records them.
        patch_size: training patch (3 values; 2 values in slice mode or for 2D images).
        slice_axis: train a 2D network on slices across this volume axis (None: 3D patches).
        batch_size: volumes per training batch (each gives ``samples_per_volume`` patches).
        samples_per_volume: patches drawn per volume and visit.
        pos_fraction: share of patches centred on foreground.
        preprocessing: deterministic preprocessing (cached).
        augmentation: random augmentation of training patches.
        cache: dataset caching mode.
        cache_dir: folder for ``cache='disk'``.
        num_workers: loader workers.
        seed: seed of sampling order and augmentation.
        skip_bad_cases: leave out cases that fail the integrity checks (with a warning) instead of refusing.
        predict_dataset: folder of images to predict; default: the test cases.
    """

    def __init__(
        self,
        dataset: str,
        split_file: str | None = None,
        labels: dict[int, str] | None = None,
        num_folds: int = 5,
        fold: int = 0,
        split_seed: int = 0,
        test_fraction: float = 0.2,
        test_cases: list[str] | None = None,
        patch_size: Sequence[int] = (32, 48, 32),
        slice_axis: int | None = None,
        batch_size: int = 4,
        samples_per_volume: int = 1,
        pos_fraction: float = 0.67,
        preprocessing: Preprocessing = Preprocessing(),
        augmentation: Augmentation = Augmentation(),
        cache: CacheMode = "memory",
        cache_dir: str | None = None,
        num_workers: int = 0,
        seed: int = 0,
        skip_bad_cases: bool = False,
        predict_dataset: str | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, cache, cache_dir)
        self.dataset = Path(dataset)
        self.split_file = split_file_of(self.dataset, split_file)
        self.labels = labels
        self.num_folds, self.fold, self.split_seed, self.test_fraction = num_folds, fold, split_seed, test_fraction
        self.test_cases = list(test_cases) if test_cases is not None else None
        self.patch_size = tuple(patch_size)
        self.slice_axis = slice_axis
        self.samples_per_volume = samples_per_volume
        self.pos_fraction = pos_fraction
        self.preprocessing = preprocessing
        self.augmentation = augmentation
        self.skip_bad_cases = skip_bad_cases
        self.predict_dataset = predict_dataset
        self.description: DatasetDescription | None = None
        self.splits: Splits | None = None
        self.cases: dict[str, Case] = {}
        self.case_ids: list[str] = []  # index -> case id, for per-case metrics
        self._datasets: dict[str, object] = {}
        self._eval_transforms: dict[bool, Compose] = {}
        self._in_channels: int | None = None

    # -- description, integrity, splits ---------------------------------------------------------------
    def prepare_data(self) -> None:
        """Check the data and write the split file (Lightning runs this on one process per node)."""
        self._describe()

    def _describe(self) -> DatasetDescription:
        if self.description is not None:
            return self.description
        desc = discover(self.dataset, self.labels)
        if not desc.cases:
            raise DatasetError(f"{self.dataset}: no cases found")
        if not desc.labels:
            raise ConfigError(f"{self.dataset}: no labels declared; set data.labels, e.g. {{0: background, 1: organ}}")
        held_out = held_out_description(desc)  # nnU-Net's imagesTs/labelsTs: the test set when present
        test_cases = held_out.cases if held_out is not None else []
        if test_cases and self.test_cases:
            raise ConfigError(f"{self.dataset}: imagesTs/labelsTs already hold the test cases; drop data.test_cases")
        bad = self._checked(desc, held_out)
        if is_splits_final(self.split_file):
            self.splits = load_splits_final(self.split_file, desc.case_ids, self.num_folds)
        else:
            self.splits = load_or_create_splits(
                self.split_file,
                desc.case_ids,
                self.num_folds,
                self.split_seed,
                0.0 if test_cases else self.test_fraction,
                test_cases=self.test_cases,
            )
        if test_cases:
            self.splits = replace(self.splits, test=sorted(c.case_id for c in test_cases))
        self.cases = {c.case_id: c for c in [*desc.cases, *test_cases] if c.case_id not in bad}
        self.case_ids = sorted(self.cases)
        if self.slice_axis is not None and desc.spatial_dims != 3:
            raise ConfigError("slice_axis is for 3D volumes; this dataset holds 2D images")
        expected = 2 if self.slice_axis is not None else desc.spatial_dims
        if len(self.patch_size) != expected:
            raise ConfigError(f"patch_size {self.patch_size} needs {expected} values for this dataset/mode")
        self.description = desc
        return desc

    def _checked(self, desc: DatasetDescription, held_out: DatasetDescription | None) -> set[str]:
        """Run the integrity checks; refuse errors (or name the bad cases to leave out with ``skip_bad_cases``)."""
        label_map = self.preprocessing.label_map
        problems = check_dataset(desc, progress=self.rank == 0, label_map=label_map)
        if held_out is not None:
            problems += check_dataset(held_out, progress=self.rank == 0, label_map=label_map)
        cases = [*desc.cases, *(held_out.cases if held_out is not None else [])]
        bad = bad_case_ids(problems) & {c.case_id for c in cases}  # orphan labels are not cases
        if problems:
            report = format_report(problems, desc.root, len(desc.cases))
            if any(p.severity == "error" for p in problems) and not self.skip_bad_cases:
                raise DataIntegrityError(
                    report + "\nFix these files, or set data.skip_bad_cases=true to leave the bad cases out."
                )
            if self.rank == 0:
                rank_zero_warn(
                    report + (f"\nLeaving out {len(bad)} bad case(s): {', '.join(sorted(bad))}" if bad else "")
                )
        return bad

    @property
    def spec(self) -> SegmentationSpec:
        desc = self._describe()
        if self._in_channels is None:
            first = self.cases[self.case_ids[0]]
            shapes = [read_volume(p).array.shape for p in first.images]
            per_file_extra = [s[desc.spatial_dims] if len(s) > desc.spatial_dims else 1 for s in shapes]
            self._in_channels = sum(per_file_extra)
        return SegmentationSpec(
            desc.class_names,
            self._in_channels,
            2 if self.slice_axis is not None else desc.spatial_dims,
            self.patch_size,
            self.slice_axis,
        )

    def items(self, ids: Sequence[str], with_label: bool = True) -> list[dict]:
        """MONAI data dicts for the given case ids (cases left out as bad are dropped)."""
        index = {cid: i for i, cid in enumerate(self.case_ids)}
        out = []
        for cid in ids:
            case = self.cases.get(cid)
            if case is None:
                continue
            images = [str(p) for p in case.images]
            item = {Key.IMAGE: images[0] if len(images) == 1 else images, Key.CASE_ID: cid, Key.CASE_INDEX: index[cid]}
            if with_label:
                item[Key.LABEL] = str(case.label)
            out.append(item)
        return out

    # -- transforms ---------------------------------------------------------------------------------
    def eval_transform(self, keep_original_label: bool = False, with_label: bool = True) -> Compose:
        key = (keep_original_label, with_label)
        if key not in self._eval_transforms:
            dims = self._describe().spatial_dims
            self._eval_transforms[key] = Compose(  # type: ignore[index]
                load_and_preprocess(dims, self.preprocessing, with_label, keep_original_label)
            )
        return self._eval_transforms[key]  # type: ignore[index]

    def train_random_transform(self) -> Compose:
        dims = 2 if self.slice_axis is not None else self._describe().spatial_dims
        return Compose(
            [
                *patch_sampling(self.patch_size, self.samples_per_volume, self.pos_fraction, self.slice_axis),
                *geometric_augmentation(self.augmentation, dims),
                *intensity_augmentation(self.augmentation),
            ]
        )

    def to_source_geometry(self, prediction: Tensor, image: MetaTensor, transform: Compose) -> MetaTensor:
        """Undo orientation, resampling and cropping of ``transform`` on a (C, *spatial) prediction."""
        pred = MetaTensor(prediction, meta=dict(image.meta), applied_operations=list(image.applied_operations))
        data = Invertd("pred", transform=transform, orig_keys=Key.IMAGE, nearest_interp=False)(
            {"pred": pred, Key.IMAGE: image}
        )
        return data["pred"]

    # -- stages -------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self._describe()
        assert self.splits is not None
        if stage in ("fit", None) and "train" not in self._datasets:
            train = self.train_share(self._part("training", self.splits.train_ids(self.fold)))
            self._datasets["train"] = self.cached(train, self.eval_transform(), "train")
        if stage in ("fit", "validate", None) and "val" not in self._datasets:
            val = self.eval_share(self._part("validation", self.splits.val_ids(self.fold)), "validation")
            self._datasets["val"] = self.cached(val, self.eval_transform(), "val")
        if stage in ("test", None) and "test" not in self._datasets:
            test_ids = self.splits.test or self.splits.val_ids(self.fold)
            test = self.eval_share(self._part("test", test_ids), "test")
            self._datasets["test"] = self.cached(test, self.eval_transform(keep_original_label=True), "test")
        if stage == "predict" and "predict" not in self._datasets:
            self._datasets["predict"] = self.cached(
                self.eval_share(self._predict_items(), "prediction"), self.eval_transform(with_label=False), "predict"
            )

    def _part(self, name: str, ids: Sequence[str]) -> list[dict]:
        """The data dicts of one part of the split; an empty part (e.g. every case left out as bad) is an error."""
        items = self.items(ids)
        if not items:
            left_out = len(set(ids) - set(self.cases))
            raise DatasetError(
                f"{self.dataset}: no {name} case left in fold {self.fold} of {self.split_file} "
                f"({len(ids)} in the split, {left_out} left out as bad): fix the bad files or choose another split"
            )
        return items

    def _predict_items(self) -> list[dict]:
        assert self.splits is not None
        if self.predict_dataset is None:
            return self.items(self.splits.test or self.splits.val_ids(self.fold), with_label=False)
        train = self._describe()
        found = discover_images(self.predict_dataset)
        # the same checks as training data (channels, dimensions, readable files), without labels
        desc = DatasetDescription(
            Path(self.predict_dataset), found, {}, train.channels, train.spatial_dims, [], train.channels_declared
        )
        bad = self._checked(desc, None)
        cases = [c for c in found if c.case_id not in bad]
        return [
            {
                Key.IMAGE: str(c.images[0]) if len(c.images) == 1 else [str(p) for p in c.images],
                Key.CASE_ID: c.case_id,
                Key.CASE_INDEX: i,
            }
            for i, c in enumerate(cases)
        ]

    def train_dataloader(self) -> DataLoader:
        return self.train_loader(self._datasets["train"], self.train_random_transform())  # type: ignore[arg-type]

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self._datasets["val"])  # type: ignore[arg-type]

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader(self._datasets["test"])  # type: ignore[arg-type]

    def tuning_dataloader(self) -> DataLoader:
        """The validation cases, at test too (to choose the post-processing on them)."""
        self.setup("validate")
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.eval_loader(self._datasets["predict"])  # type: ignore[arg-type]

    def transform_for(self, stage: str) -> Compose:
        """The evaluation transform used by a stage's loader (needed to invert predictions)."""
        return {
            "test": self.eval_transform(keep_original_label=True),
            "predict": self.eval_transform(with_label=False),
        }.get(stage, self.eval_transform())
