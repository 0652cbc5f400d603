"""The data fingerprint: what the planning rules read, gathered in the integrity check's one pass over the files.

Per case: spacing and shape (in the axis order the data module sees: RAS-reoriented for volumes, (W, H) for 2D
images, as MONAI's readers give them), channels, voxel counts per label value, and a random sample of the
intensities inside the labels (foreground) per channel, as nnU-Net samples them (10,000 voxels per case).
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from medlight.data.datalist import Case, DatasetDescription, discover
from medlight.data.integrity import Volume, check_dataset
from medlight.data.problems import Problem, format_report
from medlight.errors import DataIntegrityError, DatasetError

SAMPLES_PER_CASE = 10_000  # nnU-Net's foreground intensity sample per case


@dataclass
class CaseFacts:
    case_id: str
    spacing: tuple[float, ...]
    shape: tuple[int, ...]
    channels: int
    label_counts: dict[int, int]
    eight_bit: bool


@dataclass
class Fingerprint:
    """What the data are, for the planning rules.

    Attributes:
        root: dataset folder.
        spatial_dims: 2 or 3.
        channel_names: modality per channel (dataset.json), or ``channel0``... for folder layouts.
        cases: the facts of every readable case.
        intensity: per channel, statistics of the foreground voxels: ``p00_5``, ``p99_5``, ``mean``, ``std``.
        labels: label value -> name (declared, or found in the files for folder layouts).
        labels_declared: whether the dataset declared its labels.
        problems: the integrity check's problems (warnings only; errors stop the planning).
    """

    root: Path
    spatial_dims: int
    channel_names: list[str]
    cases: list[CaseFacts]
    intensity: list[dict[str, float]]
    labels: dict[int, str]
    labels_declared: bool
    problems: list[Problem] = field(default_factory=list)

    @property
    def spacings(self) -> np.ndarray:
        return np.array([c.spacing for c in self.cases], dtype=float)

    @property
    def shapes(self) -> np.ndarray:
        return np.array([c.shape for c in self.cases], dtype=float)

    @property
    def median_spacing(self) -> np.ndarray:
        return np.median(self.spacings, axis=0)

    @property
    def anisotropy(self) -> float:
        """Ratio of the largest to the smallest median spacing."""
        spacing = self.median_spacing
        return float(spacing.max() / spacing.min())

    @property
    def in_channels(self) -> int:
        return int(np.median([c.channels for c in self.cases]))

    @property
    def eight_bit(self) -> bool:
        return all(c.eight_bit for c in self.cases)

    def class_voxels(self) -> dict[int, int]:
        """Voxels per label value over the whole dataset."""
        total: dict[int, int] = {}
        for case in self.cases:
            for value, n in case.label_counts.items():
                total[value] = total.get(value, 0) + n
        return dict(sorted(total.items()))

    def class_cases(self) -> dict[int, int]:
        """Number of cases (images) holding each label value."""
        out: dict[int, int] = {}
        for case in self.cases:
            for value, n in case.label_counts.items():
                out[value] = out.get(value, 0) + int(n > 0)
        return dict(sorted(out.items()))

    def summary(self) -> dict:
        """Plain values for plan.json."""
        return {
            "dataset": str(self.root),
            "cases": len(self.cases),
            "spatial_dims": self.spatial_dims,
            "channels": self.channel_names,
            "eight_bit": self.eight_bit,
            "median_spacing": [round(float(s), 4) for s in self.median_spacing],
            "median_shape": [int(s) for s in np.median(self.shapes, axis=0)],
            "min_shape": [int(s) for s in self.shapes.min(0)],
            "max_shape": [int(s) for s in self.shapes.max(0)],
            "anisotropy": round(self.anisotropy, 3),
            "foreground_intensity": self.intensity,
            "labels": {str(k): v for k, v in self.labels.items()},
            "class_voxels": {str(k): v for k, v in self.class_voxels().items()},
            "class_cases": {str(k): v for k, v in self.class_cases().items()},
        }


def fingerprint(root: str | Path, labels: dict[int, str] | None = None, progress: bool = False) -> Fingerprint:
    """Discover, check and describe a segmentation dataset in one pass over its files.

    Raises:
        DataIntegrityError: the integrity check found errors (the report lists them all).
    """
    desc = discover(root, labels)
    if not desc.cases:
        raise DatasetError(f"{root}: no cases found")
    facts: list[CaseFacts] = []
    samples: list[list[np.ndarray]] = []
    lock = threading.Lock()

    def visit(case: Case, images: list[Volume], label: Volume | None) -> None:
        if label is None:
            return
        fact, sample = _case_facts(case, images, label, desc)
        with lock:
            facts.append(fact)
            samples.append(sample)

    problems = check_dataset(desc, progress=progress, visit=visit)
    if any(p.severity == "error" for p in problems):
        raise DataIntegrityError(format_report(problems, desc.root, len(desc.cases)))
    if not facts:
        raise DatasetError(f"{root}: no labelled case to plan from")
    order = np.argsort([f.case_id for f in facts])
    facts = [facts[i] for i in order]
    samples = [samples[i] for i in order]
    channels = max(f.channels for f in facts)
    intensity = [_stats(np.concatenate([s[c] for s in samples if c < len(s)])) for c in range(channels)]
    found = sorted({v for f in facts for v in f.label_counts} | {0})
    names = desc.labels or {v: ("background" if v == 0 else f"class{v}") for v in found}
    channel_names = desc.channels if desc.channels_declared else [f"channel{i}" for i in range(channels)]
    return Fingerprint(
        desc.root, desc.spatial_dims, channel_names, facts, intensity, names, bool(desc.labels), problems
    )


def _case_facts(
    case: Case, images: list[Volume], label: Volume, desc: DatasetDescription
) -> tuple[CaseFacts, list[np.ndarray]]:
    dims = desc.spatial_dims
    seg = np.asarray(label.array)
    if dims == 2 and seg.ndim == 3:
        seg = seg[..., 0]
    values, counts = np.unique(seg, return_counts=True)
    foreground = seg > 0
    channels: list[np.ndarray] = []
    for vol in images:
        array = np.asarray(vol.array)
        extra = array.reshape(*array.shape[:dims], -1)  # trailing channel axes -> one
        channels += [extra[..., c] for c in range(extra.shape[-1])]
    rng = np.random.default_rng(zlib.crc32(case.case_id.encode()))
    sample = []
    for channel in channels:
        inside = channel[foreground] if foreground.any() else channel.ravel()
        take = rng.choice(inside.size, min(inside.size, SAMPLES_PER_CASE), replace=False)
        sample.append(inside.ravel()[take].astype(np.float64))
    spacing, shape = _reader_order(label, seg.shape, dims)
    eight_bit = all(np.asarray(v.array).dtype == np.uint8 for v in images)
    counts_by_value = {int(v): int(n) for v, n in zip(values, counts)}
    return CaseFacts(case.case_id, spacing, shape, len(channels), counts_by_value, eight_bit), sample


def _reader_order(label: Volume, shape: tuple[int, ...], dims: int) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Spacing and shape in the axis order of the data module: RAS for volumes, (W, H) for 2D images."""
    if dims == 2 or label.affine is None:
        return tuple(float(s) for s in label.spacing[:dims][::-1]), tuple(int(s) for s in shape[::-1])
    world_axis = nib.orientations.io_orientation(label.affine)[:, 0].astype(int)  # voxel axis -> RAS axis
    voxel_axis = np.argsort(world_axis)
    return tuple(float(label.spacing[i]) for i in voxel_axis), tuple(int(shape[i]) for i in voxel_axis)


def _stats(values: np.ndarray) -> dict[str, float]:
    return {
        "p00_5": float(np.percentile(values, 0.5)),
        "p99_5": float(np.percentile(values, 99.5)),
        "mean": float(values.mean()),
        "std": float(values.std()),
    }
