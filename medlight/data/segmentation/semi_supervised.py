"""Semi-supervised segmentation data: a seeded, saved labeled subset of the training cases; the rest unlabeled.

The unlabeled stream is built from data dicts that have no ``label`` key at all, so a label can never reach
it. Each unlabeled draw gives two voxel-aligned views: the geometric augmentation is applied once, then the
result is copied into ``image_strong`` and only that copy gets the strong (point-wise intensity)
perturbations. Teacher (weak view) and student (strong view) therefore see the same voxel at the same place.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import CombinedLoader, rank_zero_info
from monai.transforms import Compose, CopyItemsd, MapTransform, RandSpatialCropSamplesd, SpatialPadd, SqueezeDimd
from torch.utils.data import DataLoader, Dataset

from medlight.data.sampling import draw_seed
from medlight.data.segmentation.datamodule import SegmentationDataModule
from medlight.data.segmentation.transforms import Augmentation, geometric_augmentation, intensity_augmentation
from medlight.errors import ConfigError, DatasetError
from medlight.keys import Key
from medlight.runs.layout import write_json

LABELED_FORMAT = 1


@dataclass(frozen=True)
class LabeledSubset:
    """Which training cases of a fold keep their labels.

    Attributes:
        path: the subset file.
        labeled: case ids trained with labels.
        unlabeled: the other training case ids, used without labels.
        sha256: hash of the file's bytes.
    """

    path: Path
    labeled: list[str]
    unlabeled: list[str]
    sha256: str


def load_or_create_labeled_subset(
    path: str | Path, train_ids: Sequence[str], fraction: float, seed: int
) -> LabeledSubset:
    """Load the labeled-subset file at ``path``, or draw ``round(fraction * n)`` cases (at least 1) and save it.

    Raises:
        DatasetError: the existing file was made from other training cases, fraction or seed.
        ConfigError: ``fraction`` is not in (0, 1].
    """
    path = Path(path)
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"labeled_fraction must be in (0, 1], got {fraction}")
    train = sorted(train_ids)
    if not path.is_file():
        shuffled = list(train)
        random.Random(seed).shuffle(shuffled)
        n = max(1, round(fraction * len(train)))
        content = {
            "format": LABELED_FORMAT,
            "fraction": fraction,
            "seed": seed,
            "train_ids": train,
            "labeled": sorted(shuffled[:n]),
            "unlabeled": sorted(shuffled[n:]),
        }
        write_json(path, content)
    raw = path.read_bytes()
    try:
        content = json.loads(raw)
        stored = (content["fraction"], content["seed"], content["train_ids"])
        labeled, unlabeled = list(content["labeled"]), list(content["unlabeled"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: not a medlight labeled-subset file ({err}); delete it to make a new one") from err
    if stored != (fraction, seed, train):
        raise DatasetError(
            f"{path}: made with labeled_fraction={stored[0]}, labeled_seed={stored[1]} from "
            f"{len(stored[2])} training cases, but this run asks for labeled_fraction={fraction}, "
            f"labeled_seed={seed} from {len(train)}. Point labeled_split_file to a new file."
        )
    if set(labeled) & set(unlabeled) or sorted(labeled + unlabeled) != train:
        raise DatasetError(f"{path}: labeled and unlabeled cases overlap or do not cover the training cases")
    return LabeledSubset(path, labeled, unlabeled, hashlib.sha256(raw).hexdigest())


def unlabeled_views(
    patch_size: Sequence[int],
    samples_per_volume: int,
    weak: Augmentation,
    strong: Augmentation,
    spatial_dims: int,
    slice_axis: int | None = None,
) -> list[MapTransform]:
    """Random crops (or slices) of an image-only item, geometrically augmented once, then a strong copy.

    Args:
        patch_size: spatial patch (2 values in slice mode).
        samples_per_volume: crops drawn per volume and visit.
        weak: geometric augmentation shared by both views (its intensity settings are not used).
        strong: intensity perturbations of the student's view (its geometric settings are not used).
        spatial_dims: dimensions of the network's input (2 in slice mode).
        slice_axis: in slice mode, the volume axis that is sliced.
    """
    roi = list(patch_size)
    if slice_axis is not None:
        roi.insert(slice_axis, 1)
    out: list[MapTransform] = [
        SpatialPadd(Key.IMAGE, spatial_size=roi),
        RandSpatialCropSamplesd(Key.IMAGE, roi_size=roi, num_samples=samples_per_volume, random_size=False),
    ]
    if slice_axis is not None:
        out.append(SqueezeDimd(Key.IMAGE, dim=slice_axis + 1))
    out += geometric_augmentation(weak, spatial_dims, keys=[Key.IMAGE])
    out.append(CopyItemsd(Key.IMAGE, names=Key.IMAGE_STRONG))
    out += intensity_augmentation(strong, key=Key.IMAGE_STRONG)
    return out


class Repeated(Dataset):
    """``base`` repeated ``times`` times (index ``i`` is item ``i % len(base)``), without copying it."""

    def __init__(self, base: Dataset, times: int) -> None:
        self.base, self.times = base, max(1, times)

    def __len__(self) -> int:
        return len(self.base) * self.times  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.base[index % len(self.base)]  # type: ignore[arg-type]


class SemiSupervisedDataModule(SegmentationDataModule):
    """The segmentation data module with a labeled fraction of each fold's training cases.

    The labeled cases are drawn once from ``labeled_seed`` and saved (``labeled_split_file``); the other
    training cases form the unlabeled stream, which never holds a label. Validation and test use the
    labeled held-out folds as in :class:`SegmentationDataModule`.

    With ``unlabeled: true`` (for a teacher-student task) training batches are
    ``{"labeled": ..., "unlabeled": ...}`` (Lightning's ``CombinedLoader``; an epoch is one pass over the
    unlabeled cases, the labeled ones are repeated to match). With ``unlabeled: false`` (the supervised-only
    baseline, e.g. :class:`medlight.tasks.SegmentationTask`) they hold the labeled cases alone.

    Args:
        dataset: dataset folder (see :class:`SegmentationDataModule`).
        labeled_fraction: share of the fold's training cases that keep their labels.
        labeled_seed: seed of the draw of labeled cases.
        labeled_split_file: where the draw is saved; default
            ``<split file folder>/labeled/fold<k>_<percent>pct_seed<s>.json``.
        unlabeled: also yield the unlabeled stream (false: train on the labeled cases alone).
        unlabeled_batch_size: unlabeled volumes per batch (default ``batch_size``).
        strong_augmentation: intensity perturbations of the student's view of unlabeled items.
        **kwargs: the dataset, split, patch and loader arguments of :class:`SegmentationDataModule`.
    """

    def __init__(
        self,
        dataset: str,
        labeled_fraction: float = 0.1,
        labeled_seed: int = 0,
        labeled_split_file: str | None = None,
        unlabeled: bool = True,
        unlabeled_batch_size: int | None = None,
        strong_augmentation: Augmentation = Augmentation(
            flip_prob=0.0, intensity_prob=0.8, noise_prob=0.5, gamma_prob=0.5
        ),
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, **kwargs)
        self.unlabeled = unlabeled
        self.labeled_fraction, self.labeled_seed = labeled_fraction, labeled_seed
        percent = f"{100 * labeled_fraction:g}".replace(".", "p")
        default = self.split_file.parent / "labeled" / f"fold{self.fold}_{percent}pct_seed{labeled_seed}.json"
        self.labeled_split_file = Path(labeled_split_file) if labeled_split_file else default
        self.unlabeled_batch_size = unlabeled_batch_size or self.batch_size
        self.strong_augmentation = strong_augmentation
        self.subset: LabeledSubset | None = None

    def labeled_subset(self) -> LabeledSubset:
        """The fold's labeled/unlabeled partition (made and saved on first use)."""
        if self.subset is None:
            self._describe()
            assert self.splits is not None
            train = self.splits.train_ids(self.fold)
            self.subset = load_or_create_labeled_subset(
                self.labeled_split_file, train, self.labeled_fraction, self.labeled_seed
            )
        return self.subset

    def prepare_data(self) -> None:
        super().prepare_data()
        self.labeled_subset()

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and "train" not in self._datasets:
            subset = self.labeled_subset()
            labeled = self.train_share(self.items(subset.labeled))
            unlabeled = self.train_share(self.items(subset.unlabeled, with_label=False))
            self._datasets["train"] = self.cached(labeled, self.eval_transform(), "train")
            if unlabeled and self.unlabeled:  # a supervised-only run never loads them
                self._datasets["unlabeled"] = self.cached(unlabeled, self.eval_transform(with_label=False), "unlabeled")
        super().setup(stage)

    def unlabeled_random_transform(self) -> Compose:
        dims = 2 if self.slice_axis is not None else self._describe().spatial_dims
        return Compose(
            unlabeled_views(
                self.patch_size,
                self.samples_per_volume,
                self.augmentation,
                self.strong_augmentation,
                dims,
                self.slice_axis,
            )
        )

    def run_facts(self) -> dict[str, Any]:
        subset = self.labeled_subset()
        return {**super().run_facts(), "labeled_subset_file": str(subset.path), "labeled_subset_sha256": subset.sha256}

    def train_dataloader(self) -> DataLoader | CombinedLoader:  # type: ignore[override]
        if not self.unlabeled:
            rank_zero_info(f"training on the {len(self.labeled_subset().labeled)} labeled cases only")
            return super().train_dataloader()
        if "unlabeled" not in self._datasets:
            raise ConfigError(
                f"labeled_fraction={self.labeled_fraction} leaves no unlabeled case for a semi-supervised task"
            )
        unlabeled: Dataset = self._datasets["unlabeled"]  # type: ignore[assignment]
        labeled: Dataset = self._datasets["train"]  # type: ignore[assignment]
        unlabeled_batches = math.ceil(len(unlabeled) / self.unlabeled_batch_size)  # type: ignore[arg-type]
        repeats = math.ceil(unlabeled_batches * self.batch_size / len(labeled))  # type: ignore[arg-type]
        resume = dict(self._resume)  # each loader consumes it; both continue at the same batch
        u_loader = self.train_loader(unlabeled, self.unlabeled_random_transform(), self.unlabeled_batch_size)
        sampler: Any = u_loader.sampler
        sampler.seed = draw_seed(self.seed, 1)  # decorrelate order and augmentation from the labeled loader
        self._resume = resume
        l_loader = self.train_loader(Repeated(labeled, repeats), self.train_random_transform())
        return CombinedLoader({Key.LABELED: l_loader, Key.UNLABELED: u_loader}, mode="min_size")
