"""Builders of MONAI dictionary-transform pipelines, configured by two small dataclasses.

The pipeline is split in parts so other data modules (semi-supervised, classification) reuse them:
``load_and_preprocess`` (deterministic, cached), ``patch_sampling`` (label-centred crops, 3D patches or
2D slices), ``geometric_augmentation`` (applied to image and label alike) and ``intensity_augmentation``
(image only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from monai.data import PILReader
from monai.transforms import (
    ClipIntensityPercentilesd,
    CopyItemsd,
    CropForegroundd,
    EnsureTyped,
    LoadImaged,
    MapLabelValued,
    MapTransform,
    NormalizeIntensityd,
    Orientationd,
    Rand2DElasticd,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    Spacingd,
    SpatialPadd,
    SqueezeDimd,
)

from medlight.keys import Key


@dataclass
class Preprocessing:
    """Deterministic preprocessing, applied to every case once and cached.

    Attributes:
        orientation: axis codes to reorient 3D volumes to (None keeps the file's orientation).
        spacing: target voxel size in mm; None keeps the native spacing.
        intensity: ``zscore`` per volume and channel (MRI), ``ct_window`` (clip to ``ct_window`` and scale
            to [0, 1]; CT), ``ct_dataset`` (nnU-Net's CT scheme: clip to ``ct_window``, then z-score with the
            dataset's foreground ``dataset_stats``, the same mapping for every case), or ``none``.
        clip_percentiles: with ``zscore``, clip each volume to these percentiles first (robust to outliers).
        ct_window: Hounsfield range used by ``ct_window`` and ``ct_dataset``.
        dataset_stats: (mean, std) of the dataset's foreground intensities, used by ``ct_dataset``.
        crop_foreground: crop each volume to the bounding box of its nonzero image voxels.
        label_map: relabel values before anything else, e.g. ``{255: 1}`` for 0/255 PNG masks.
    """

    orientation: str | None = "RAS"
    spacing: tuple[float, ...] | None = None
    intensity: Literal["zscore", "ct_window", "ct_dataset", "none"] = "zscore"
    clip_percentiles: tuple[float, float] | None = (0.5, 99.5)
    ct_window: tuple[float, float] = (-1000.0, 400.0)
    dataset_stats: tuple[float, float] = (0.0, 1.0)
    crop_foreground: bool = False
    label_map: dict[int, int] | None = None


@dataclass
class Augmentation:
    """Random training augmentation; a probability of 0 switches a transform off.

    Attributes:
        flip_prob: probability of a flip, per spatial axis.
        rotate_prob: probability of a random rotation of up to ``rotate_degrees`` about each axis.
        rotate_degrees: maximum rotation angle.
        scale_prob: probability of a random zoom of up to +-``scale_range``.
        scale_range: relative zoom range.
        elastic_prob: probability of an elastic deformation (costly on CPU in 3D).
        intensity_prob: probability of a random intensity scale and (separately) shift by up to 10%.
        noise_prob: probability of additive Gaussian noise (std 0.1 of the z-scored intensities).
        gamma_prob: probability of a random gamma (contrast) change in [0.7, 1.5].
    """

    flip_prob: float = 0.5
    rotate_prob: float = 0.0
    rotate_degrees: float = 15.0
    scale_prob: float = 0.0
    scale_range: float = 0.1
    elastic_prob: float = 0.0
    intensity_prob: float = 0.15
    noise_prob: float = 0.1
    gamma_prob: float = 0.0


def load_and_preprocess(
    spatial_dims: int, prep: Preprocessing, with_label: bool = True, keep_original_label: bool = False
) -> list[MapTransform]:
    """Load image (and label) and apply the deterministic preprocessing.

    Args:
        spatial_dims: 3 for volumes, 2 for 2D images.
        prep: preprocessing settings.
        with_label: whether items carry a ``label`` key.
        keep_original_label: also keep an untouched ``label_original`` (for scoring in the source geometry).
    """
    keys = [Key.IMAGE, Key.LABEL] if with_label else [Key.IMAGE]
    label_keys = [Key.LABEL, Key.LABEL_ORIGINAL] if keep_original_label else [Key.LABEL]
    reader = PILReader(converter=_to_grayscale_if_label) if spatial_dims == 2 else None
    out: list[MapTransform] = [
        LoadImaged(
            Key.IMAGE,
            ensure_channel_first=True,
            image_only=True,
            reader=PILReader() if spatial_dims == 2 else None,  # type: ignore[arg-type]
        ),
    ]
    if with_label:
        out.append(LoadImaged(Key.LABEL, ensure_channel_first=True, image_only=True, reader=reader))  # type: ignore[arg-type]
        if prep.label_map:
            orig, target = zip(*sorted(prep.label_map.items()))
            out.append(MapLabelValued(Key.LABEL, list(orig), list(target)))
        if keep_original_label:
            out.append(CopyItemsd(Key.LABEL, names=Key.LABEL_ORIGINAL))
    out.append(EnsureTyped(Key.IMAGE, dtype=torch.float32))
    if with_label:
        out.append(EnsureTyped(label_keys, dtype=torch.float32))
    if spatial_dims == 3 and prep.orientation:
        out.append(Orientationd(keys, axcodes=prep.orientation, labels=None))
    if prep.spacing:
        out.append(Spacingd(keys, pixdim=prep.spacing, mode=("bilinear", "nearest")[: len(keys)]))
    out += _intensity(prep)
    if prep.crop_foreground:
        out.append(CropForegroundd(keys, source_key=Key.IMAGE, allow_smaller=True))
    return out


def _to_grayscale_if_label(image):  # PIL image -> one channel of label values
    return image.convert("L") if image.mode not in ("L", "I", "I;16", "P", "1") else image


def _intensity(prep: Preprocessing) -> list[MapTransform]:
    if prep.intensity == "zscore":
        clip = []
        if prep.clip_percentiles:
            low, high = prep.clip_percentiles
            clip = [ClipIntensityPercentilesd(Key.IMAGE, low, high, channel_wise=True)]
        return [*clip, NormalizeIntensityd(Key.IMAGE, channel_wise=True)]
    if prep.intensity == "ct_window":
        low, high = prep.ct_window
        return [ScaleIntensityRanged(Key.IMAGE, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)]
    if prep.intensity == "ct_dataset":  # clip, then (x - mean) / std: a linear map of the clipped range
        low, high = prep.ct_window
        mean, std = prep.dataset_stats[0], max(prep.dataset_stats[1], 1e-6)
        return [
            ScaleIntensityRanged(
                Key.IMAGE, a_min=low, a_max=high, b_min=(low - mean) / std, b_max=(high - mean) / std, clip=True
            )
        ]
    return []


def patch_sampling(
    patch_size: Sequence[int],
    samples_per_volume: int,
    pos_fraction: float = 0.67,
    slice_axis: int | None = None,
) -> list[MapTransform]:
    """Pad to at least one patch and draw label-centred patches (or 2D slices when ``slice_axis`` is set).

    Args:
        patch_size: spatial patch size (2 values in slice mode, else one per spatial dim).
        samples_per_volume: patches drawn per volume each time it is loaded.
        pos_fraction: share of patches centred on a foreground voxel (the rest on background).
        slice_axis: in 2D slice mode, the volume axis that is sliced (the patch is 1 voxel thick there).
    """
    roi = list(patch_size)
    if slice_axis is not None:
        roi.insert(slice_axis, 1)
    pos = max(pos_fraction, 0.0)
    out: list[MapTransform] = [
        SpatialPadd([Key.IMAGE, Key.LABEL], spatial_size=roi),
        RandCropByPosNegLabeld(
            [Key.IMAGE, Key.LABEL],
            Key.LABEL,
            spatial_size=roi,
            pos=pos,
            neg=1.0 - pos,
            num_samples=samples_per_volume,
            allow_smaller=False,
        ),
    ]
    if slice_axis is not None:
        out.append(SqueezeDimd([Key.IMAGE, Key.LABEL], dim=slice_axis + 1))
    return out


def geometric_augmentation(aug: Augmentation, spatial_dims: int, keys: Sequence[str] = (Key.IMAGE, Key.LABEL)) -> list:
    """Flips, rotations, zooms and elastic deformation, identical for image and label."""
    keys = list(keys)
    modes = ["bilinear" if k == Key.IMAGE else "nearest" for k in keys]
    out: list[MapTransform] = []
    if aug.flip_prob > 0:
        out += [RandFlipd(keys, prob=aug.flip_prob, spatial_axis=axis) for axis in range(spatial_dims)]
    rotate = np.deg2rad(aug.rotate_degrees) if aug.rotate_prob > 0 else 0.0
    if aug.rotate_prob > 0 or aug.scale_prob > 0:
        prob = max(aug.rotate_prob, aug.scale_prob)
        out.append(
            RandAffined(
                keys,
                prob=prob,
                rotate_range=[rotate] * (1 if spatial_dims == 2 else 3),
                scale_range=[aug.scale_range if aug.scale_prob > 0 else 0.0] * spatial_dims,
                mode=modes,
                padding_mode="zeros",
            )
        )
    if aug.elastic_prob > 0:
        if spatial_dims == 3:
            out.append(
                Rand3DElasticd(
                    keys,
                    sigma_range=(5, 8),
                    magnitude_range=(50, 150),
                    prob=aug.elastic_prob,
                    mode=modes,
                    padding_mode="zeros",
                )
            )
        else:
            out.append(
                Rand2DElasticd(
                    keys,
                    spacing=(16, 16),
                    magnitude_range=(1, 2),
                    prob=aug.elastic_prob,
                    mode=modes,
                    padding_mode="zeros",
                )
            )
    return out


def intensity_augmentation(aug: Augmentation, key: str = Key.IMAGE) -> list[MapTransform]:
    """Random intensity scale/shift, Gaussian noise and gamma, on the image only."""
    out: list[MapTransform] = []
    if aug.intensity_prob > 0:
        out += [
            RandScaleIntensityd(key, factors=0.1, prob=aug.intensity_prob),
            RandShiftIntensityd(key, offsets=0.1, prob=aug.intensity_prob),
        ]
    if aug.noise_prob > 0:
        out.append(RandGaussianNoised(key, prob=aug.noise_prob, std=0.1))
    if aug.gamma_prob > 0:
        out.append(RandAdjustContrastd(key, prob=aug.gamma_prob, gamma=(0.7, 1.5)))
    return out
