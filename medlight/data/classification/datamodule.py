"""Data module for 2D slice classification: image folders per class, a CSV, or slices of 3D volumes.

Items are small 2D slices held in memory (the extraction is the cache). Folds are patient-wise: every
slice of a patient (or pseudo-patient, and every pseudo-patient of one case) is in the same fold.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from monai.data import list_data_collate
from monai.transforms import Compose, RandFlipd, RandGaussianNoised, RandScaleIntensityd
from torch.utils.data import DataLoader, DistributedSampler

from medlight.contracts import ClassificationSpec
from medlight.data.base import CacheMode, MedlightDataModule
from medlight.data.classification.slices import VolumeSlices, image_item, volume_items
from medlight.data.datalist import discover
from medlight.data.splits import Splits, load_or_create_splits
from medlight.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz")


@dataclass(frozen=True)
class SliceAugmentation:
    """Random augmentation of training slices (a probability of 0 turns one off).

    Args:
        flip_prob: probability of a flip along ``flip_axis`` (image and mask together).
        flip_axis: spatial axis of the flip.
        scale_prob: probability of scaling intensities by 1 + U(-0.1, 0.1).
        noise_prob: probability of adding Gaussian noise of std ``noise_std``.
        noise_std: noise standard deviation (z-scored intensities).
    """

    flip_prob: float = 0.5
    flip_axis: int = 0
    scale_prob: float = 0.3
    noise_prob: float = 0.0
    noise_std: float = 0.1


class ClassificationDataModule(MedlightDataModule):
    """Slice classification data with optional organ masks and patient-wise folds.

    Exactly one source: ``csv`` (columns ``path``, ``label``, ``patient``, optional ``mask``; paths relative
    to the CSV; labels as class indices or names), ``image_folder`` (``<folder>/<class name>/<image>``,
    the patient is the part of the file name matched by ``patient_pattern``) or ``volumes``.

    Args:
        csv: CSV file of slices.
        image_folder: folder with one sub-folder of images per class.
        volumes: slices of 3D volumes with a per-slice label rule.
        class_names: class names in index order (default: folder names, or ``negative``/``positive``).
        patient_pattern: regular expression whose first group is the patient id in a file name.
        image_size: (H, W) every slice is resized to.
        split_file: split file (made once, reused); default next to the data.
        num_folds: patient-wise folds.
        fold: validation fold of this run.
        split_seed: seed of the split.
        test_fraction: share of patients held out for testing (0 with ``cross_validate``).
        cross_validate: test on the validation fold (k-fold cross-validation: every patient tested once
            over the folds). Model selection must then not use validation metrics: checkpoint the last epoch.
        batch_size: slices per training batch.
        balance_classes: draw training slices with probability inversely proportional to their class's count,
            so each class fills about the same share of every epoch (oversampling the minority, which Buda et
            al. 2018, Neural Networks 106:249-259, found the most reliable remedy for imbalanced CNN training).
        augmentation: random augmentation of training slices.
        num_workers: loader workers.
        seed: seed of order and augmentation.
        cache: unused beyond ``memory`` (slices are always held in memory); kept for a uniform interface.
    """

    def __init__(
        self,
        csv: str | None = None,
        image_folder: str | None = None,
        volumes: VolumeSlices | None = None,
        class_names: list[str] | None = None,
        patient_pattern: str = r"^([^_]+)",
        image_size: Sequence[int] = (96, 96),
        split_file: str | None = None,
        num_folds: int = 3,
        fold: int = 0,
        split_seed: int = 0,
        test_fraction: float = 0.0,
        cross_validate: bool = True,
        batch_size: int = 16,
        balance_classes: bool = False,
        augmentation: SliceAugmentation = SliceAugmentation(),
        num_workers: int = 0,
        seed: int = 0,
        cache: CacheMode = "memory",
    ) -> None:
        super().__init__(batch_size, num_workers, seed, cache, None)
        if sum(x is not None for x in (csv, image_folder, volumes)) != 1:
            raise ConfigError("set exactly one of data.csv, data.image_folder, data.volumes")
        if cross_validate and test_fraction > 0:
            raise ConfigError("cross_validate tests on the validation fold: set test_fraction to 0")
        self.csv, self.image_folder, self.volumes = csv, image_folder, volumes
        self.class_names_arg = class_names
        self.patient_pattern = patient_pattern
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.split_file = split_file
        self.num_folds, self.fold, self.split_seed, self.test_fraction = num_folds, fold, split_seed, test_fraction
        self.cross_validate = cross_validate
        self.augmentation = augmentation
        self.balance_classes = balance_classes
        self.items: list[dict] = []
        self.case_ids: list[str] = []  # unit index -> patient (unit) id, for per-patient tables
        self.class_names: list[str] = []
        self.splits: Splits | None = None
        self._groups: dict[str, str] = {}

    # -- reading --------------------------------------------------------------------------------------
    def _load(self) -> None:
        if self.items:
            return
        if self.csv:
            items = self._from_csv(Path(self.csv))
        elif self.image_folder:
            items = self._from_folders(Path(self.image_folder))
        else:
            items = self._from_volumes(self.volumes)  # type: ignore[arg-type]
        if not items:
            raise DatasetError(f"{self._source}: no slices found")
        self.case_ids = sorted({it["unit"] for it in items})
        index = {u: i for i, u in enumerate(self.case_ids)}
        for it in items:
            it["case_index"] = index[it["unit"]]
        self.items = items
        self.splits = load_or_create_splits(
            self._split_path, self.case_ids, self.num_folds, self.split_seed, self.test_fraction, self._groups
        )

    @property
    def _source(self) -> Path:
        return Path(self.csv or self.image_folder or self.volumes.dataset)  # type: ignore[union-attr]

    @property
    def _split_path(self) -> Path:
        if self.split_file:
            return Path(self.split_file)
        base = self._source.parent if self.csv else self._source
        return base / "splits_classification.json"

    def _class_index(self, value: str, where: str) -> int:
        if value.strip().lstrip("-").isdigit() and int(value) in range(len(self.class_names)):
            return int(value)
        if value.strip() in self.class_names:
            return self.class_names.index(value.strip())
        raise DatasetError(f"{where}: label {value!r} is neither a class index nor one of {self.class_names}")

    def _from_csv(self, path: Path) -> list[dict]:
        if not path.is_file():
            raise DatasetError(f"{path}: CSV file not found")
        try:
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        except (csv.Error, UnicodeDecodeError) as err:
            raise DatasetError(f"{path}: not a readable CSV file ({err})") from err
        missing = {"path", "label", "patient"} - set(rows[0] if rows else {})
        if missing:
            raise DatasetError(f"{path}: missing column(s) {sorted(missing)} (needs path, label, patient[, mask])")
        for n, row in enumerate(rows, start=2):
            empty = [k for k in ("path", "label", "patient") if not (row.get(k) or "").strip()]
            if empty:
                raise DatasetError(f"{path} line {n}: empty {', '.join(empty)}")
        self.class_names = self.class_names_arg or sorted({r["label"].strip() for r in rows})
        items, files = [], []
        for n, row in enumerate(rows, start=2):
            where = f"{path} line {n}"
            file = _inside(path.parent, row["path"].strip(), where)
            mask = _inside(path.parent, row["mask"].strip(), where) if (row.get("mask") or "").strip() else None
            label = self._class_index(row["label"], where)
            items.append(image_item(file, label, row["patient"], self.image_size, mask))
            files.append(file)
        _same_channels(items, files)
        return items

    def _from_folders(self, root: Path) -> list[dict]:
        if not root.is_dir():
            raise DatasetError(f"{root}: image folder not found")
        self.class_names = self.class_names_arg or sorted(p.name for p in root.iterdir() if p.is_dir())
        items, files = [], []
        for label, name in enumerate(self.class_names):
            for file in sorted((root / name).glob("*")):
                if file.name.lower().endswith(IMAGE_SUFFIXES):
                    _inside(root, file, str(root / name))
                    match = re.match(self.patient_pattern, file.name)
                    patient = match.group(1) if match and match.groups() else file.name
                    items.append(image_item(file, label, patient, self.image_size, None))
                    files.append(file)
        _same_channels(items, files)
        return items

    def _from_volumes(self, spec: VolumeSlices) -> list[dict]:
        self.class_names = self.class_names_arg or ["negative", "positive"]
        root = Path(spec.dataset)
        if not root.is_dir():
            raise DatasetError(f"{root}: dataset folder not found")
        items = []
        for case_id, images, label, mask in self._volume_cases(root, spec):
            case_items = volume_items(case_id, images, label, mask, spec, self.image_size)
            if spec.hemispheres:
                self._groups.update({f"{case_id}_A": case_id, f"{case_id}_B": case_id})
            items += case_items
        return items

    @staticmethod
    def _volume_cases(root: Path, spec: VolumeSlices) -> list[tuple[str, list[Path], Path, Path | None]]:
        if spec.image_files:
            if not spec.label_file:
                raise ConfigError("volumes.image_files needs volumes.label_file")
            folders = sorted({p.parent for p in root.rglob(spec.image_files[0])})
            if not folders:
                raise DatasetError(f"{root}: no case folder holds {spec.image_files[0]}")
            mask = spec.mask_file if spec.mask == "file" else None
            return [
                (f.name, [f / n for n in spec.image_files], f / spec.label_file, f / mask if mask else None)
                for f in folders
            ]
        if spec.mask == "file":
            raise ConfigError("volumes.mask: file needs the case-folder layout (image_files, label_file, mask_file)")
        cases = [c for c in discover(root).cases if c.label is not None]
        return [(c.case_id, list(c.images), c.label, None) for c in cases]  # type: ignore[misc]

    # -- Lightning hooks --------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._load()

    def setup(self, stage: str) -> None:
        self._load()

    def stage_ids(self, stage: str) -> list[str]:
        """Patient (unit) ids of ``train``, ``val`` or ``test``."""
        assert self.splits is not None
        if stage == "train":
            return self.splits.train_ids(self.fold)
        if stage == "val" or self.cross_validate:
            return self.splits.val_ids(self.fold)
        return list(self.splits.test)

    def stage_items(self, stage: str) -> list[dict]:
        ids = set(self.stage_ids(stage))
        # the shares work on any items, here unit (patient) ids
        ordered: list = sorted(ids)
        units = self.train_share(ordered) if stage == "train" else self.eval_share(ordered, f"{stage} patient")
        return [it for it in self.items if it["unit"] in set(units)]

    def train_dataloader(self) -> DataLoader:
        a = self.augmentation
        keys = ["image", "mask"]
        random = Compose(
            [
                RandFlipd(keys, prob=a.flip_prob, spatial_axis=a.flip_axis),
                RandScaleIntensityd("image", factors=0.1, prob=a.scale_prob),
                RandGaussianNoised("image", prob=a.noise_prob, std=a.noise_std),
            ]
        )
        items = self.stage_items("train")
        weights = class_balancing_weights(items) if self.balance_classes else None
        return self.train_loader(items, random, weights=weights)  # type: ignore[arg-type]

    def val_dataloader(self) -> DataLoader:
        return self._eval("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval("test")

    def _eval(self, stage: str) -> DataLoader:
        data = self.stage_items(stage)
        # one replica: each rank already holds its own patients, Lightning must not re-shard them
        sampler: DistributedSampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=False)  # type: ignore[arg-type]
        return DataLoader(
            data,  # type: ignore[arg-type]
            batch_size=self.batch_size * 2,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=list_data_collate,
        )

    @property
    def spec(self) -> ClassificationSpec:
        """Class names and input channels, for the task."""
        self._load()
        return ClassificationSpec(list(self.class_names), self.in_channels)

    @property
    def in_channels(self) -> int:
        self._load()
        return int(self.items[0]["image"].shape[0])


def _inside(root: Path, rel: str | Path, where: str) -> Path:
    """``root / rel`` with symlinks resolved; a DatasetError if it leaves ``root``."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DatasetError(f"{where}: path {str(rel)!r} resolves to {path}, outside the dataset folder {root}")
    return path


def _same_channels(items: list[dict], files: list[Path]) -> None:
    """Every image must have the channel count most images have (grey, RGB and RGBA do not mix)."""
    counts = Counter(int(it["image"].shape[0]) for it in items)
    if len(counts) <= 1:
        return
    usual = counts.most_common(1)[0][0]
    odd = next((f, int(it["image"].shape[0])) for it, f in zip(items, files) if it["image"].shape[0] != usual)
    raise DatasetError(
        f"{odd[0]}: image has {odd[1]} channel(s), most images have {usual} ({dict(counts)} images per channel "
        "count); convert them all to one mode (grey, RGB or RGBA)"
    )


def class_balancing_weights(items: Sequence[dict]) -> list[float]:
    """1 / (items of the same class) per item: every class is drawn equally often in expectation."""
    counts = Counter(int(it["label"]) for it in items)
    return [1.0 / counts[int(it["label"])] for it in items]
