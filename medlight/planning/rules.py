"""The planning rules, in one place, each with its published reason.

The rules follow nnU-Net (Isensee et al. 2021, "nnU-Net: a self-configuring method for deep learning-based
biomedical image segmentation", Nature Methods 18:203-211; its "fixed", "rule-based" and "empirical"
parameters) and say where they depart from it. Every function returns its value(s) and one sentence of reason,
which ends up in ``plan.md``. Nothing here reads files or trains: :mod:`medlight.planning.fingerprint` gives
the facts, :mod:`medlight.planning.budget` the measured times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medlight.planning.fingerprint import Fingerprint

ANISOTROPY_THRESHOLD = 3.0  # nnU-Net: max/min spacing ratio above which data count as anisotropic
FOREGROUND_OVERSAMPLING = 0.33  # nnU-Net: a third of the patches are forced to hold foreground
MIN_BATCH = 2  # nnU-Net: batch size at least 2
MAX_BATCH_SHARE = 0.05  # nnU-Net: a batch covers at most 5% of the dataset's voxels
MIN_FEATURE_MAP = 4  # nnU-Net: pool along an axis while its feature map stays at least 4 voxels
MAX_POOLS = {2: 6, 3: 5}
# Voxels per training step (batch x patch). nnU-Net fits patch and batch to a GPU memory target (~8-11 GB, e.g.
# 128^3 x 2 in 3D); on a CPU the limit is compute per step, so the budget there is much smaller (departure).
STEP_VOXELS = {("gpu", 3): 2 * 128**3, ("gpu", 2): 12 * 256**2, ("cpu", 3): 2**18, ("cpu", 2): 2**17}
MAX_BATCH = {"gpu": 64, "cpu": 32}  # departure: nnU-Net has no cap but the 5% rule; few updates hurt in minutes
BASE_FILTERS = {"gpu": 32, "cpu": 16}  # nnU-Net: 32, doubling per level (departure on CPU: compute)
MAX_FILTERS = {2: 512, 3: 320}  # nnU-Net caps


@dataclass
class Choice:
    """One planned value and why."""

    name: str
    value: Any
    reason: str


@dataclass
class Geometry:
    """How the network sees the data: 3D patches, 2D slices of volumes, or 2D images."""

    mode: str  # "3d", "2d_slices" or "2d"
    spacing: list[float] | None  # target spacing handed to Spacingd (-1: keep the native spacing on that axis)
    slice_axis: int | None
    median_shape: list[int]  # in the target spacing, network axes only
    net_spacing: list[float]  # spacing of the network's axes (for the topology rule)
    choices: list[Choice] = field(default_factory=list)


def target_spacing(fp: Fingerprint) -> Choice:
    """nnU-Net: the median spacing per axis; for anisotropic data (max/min > 3) the low-resolution axis gets the
    10th percentile of its spacings, so that the thick-slice cases are not upsampled to the thin ones' (and the
    few thin ones are not blurred much)."""
    if fp.spatial_dims == 2:
        return Choice("target_spacing", None, "2D images: no resampling (nnU-Net keeps 2D images as they are)")
    spacings = fp.spacings
    target = np.median(spacings, axis=0)
    reason = "median spacing of the cases (nnU-Net)"
    if target.max() / target.min() > ANISOTROPY_THRESHOLD:
        axis = int(np.argmax(target))
        target[axis] = np.percentile(spacings[:, axis], 10)
        reason += f"; anisotropic (ratio {fp.anisotropy:.1f} > 3): axis {axis} takes the 10th percentile (nnU-Net)"
    target_list = [round(float(t), 4) for t in target]
    if np.allclose(spacings, target, rtol=0.01):
        return Choice("target_spacing", None, reason + f"; every case is already at {target_list}: no resampling")
    return Choice("target_spacing", target_list, reason)


def shape_in(fp: Fingerprint, spacing: list[float] | None) -> np.ndarray:
    """Median case shape after resampling to ``spacing``."""
    if spacing is None:
        return np.median(fp.shapes, axis=0)
    return np.median(fp.shapes * fp.spacings / np.asarray(spacing), axis=0)


def geometries(fp: Fingerprint) -> list[Geometry]:
    """nnU-Net configures 2D and 3D U-Nets and picks (or ensembles) by cross-validation. Here: 3D when the data
    are 3D and not too anisotropic; both (3D first) when anisotropic, to be chosen on validation; 2D for 2D
    images, and 2D slices only when the median volume is too thin to pool in 3D."""
    spacing = target_spacing(fp)
    if fp.spatial_dims == 2:
        shape = shape_in(fp, None)
        flat = [float(s) for s in fp.median_spacing]
        return [Geometry("2d", None, None, [int(s) for s in shape], flat, [spacing])]
    target = spacing.value if spacing.value is not None else list(fp.median_spacing)
    shape = shape_in(fp, spacing.value)
    slice_axis = int(np.argmax(target))
    in_plane = [int(s) for i, s in enumerate(shape) if i != slice_axis]
    slice_spacing = [-1.0 if i == slice_axis else float(t) for i, t in enumerate(target)]
    if spacing.value is None:
        slice_spacing = None  # type: ignore[assignment]
    plane_spacing = [float(t) for i, t in enumerate(target) if i != slice_axis]
    two_d = Geometry("2d_slices", slice_spacing, slice_axis, in_plane, plane_spacing, [spacing])
    three_d = Geometry("3d", spacing.value, None, [int(s) for s in shape], [float(t) for t in target], [spacing])
    if shape.min() < 2 * MIN_FEATURE_MAP:
        two_d.choices.append(Choice("configuration", "2d_slices", f"median shape {three_d.median_shape} too thin"))
        return [two_d]
    anisotropy = max(target) / min(target)
    if anisotropy > ANISOTROPY_THRESHOLD:
        reason = (
            f"anisotropic target spacing (ratio {anisotropy:.1f} > 3): 3D and 2D slices across axis {slice_axis} "
            "are both planned; keep the one with the higher validation Dice (nnU-Net chooses by cross-validation)"
        )
        three_d.choices.append(Choice("configuration", "3d (alternative: 2d_slices)", reason))
        two_d.choices.append(Choice("configuration", "2d_slices (alternative to 3d)", reason))
        return [three_d, two_d]
    three_d.choices.append(Choice("configuration", "3d", f"3D data, anisotropy {anisotropy:.1f} <= 3"))
    return [three_d]


def normalisation(fp: Fingerprint) -> Choice:
    """nnU-Net: CT is clipped to the 0.5/99.5 percentiles of the dataset's foreground intensities and z-scored
    with the foreground mean and std (the same mapping for every case: Hounsfield units mean the same in every
    scan); every other modality is z-scored per case (MRI intensities are arbitrary per scan)."""
    names = [n.lower() for n in fp.channel_names]
    if names and all(n == "ct" for n in names):
        stats = fp.intensity[0]
        prep = {
            "intensity": "ct_dataset",
            "ct_window": [round(stats["p00_5"], 3), round(stats["p99_5"], 3)],
            "dataset_stats": [round(stats["mean"], 3), round(stats["std"], 3)],
            "clip_percentiles": None,
        }
        return Choice(
            "normalisation",
            prep,
            "CT: clip to the foreground 0.5/99.5 percentiles, z-score with the dataset's foreground mean/std (nnU-Net)",
        )
    prep = {"intensity": "zscore", "clip_percentiles": None}
    if fp.eight_bit and fp.spatial_dims == 2:
        return Choice("normalisation", prep, "8-bit images: z-score per image and channel (nnU-Net: non-CT)")
    mixed = " (some channels are CT: mixed modalities are z-scored per case, a departure)" if "ct" in names else ""
    return Choice(
        "normalisation",
        prep,
        f"{', '.join(fp.channel_names)}: z-score per case and channel, no clipping (nnU-Net: non-CT){mixed}; "
        "medlight z-scores over all voxels, nnU-Net over the non-zero region when cropping shrinks the image",
    )


def patch_and_batch(
    median_shape: list[int], spacing: list[float], accelerator: str, dataset_voxels: float, train_cases: int
) -> tuple[list[int], int, int, Choice]:
    """Patch from the median shape, shrunk (largest physical axis first, as nnU-Net shrinks the axis largest
    relative to the median shape) until a batch of 2 fits the voxel budget per step; the batch then grows to fill
    the budget, at least 2 (nnU-Net), at most 5% of the dataset's voxels (nnU-Net)."""
    dims = len(median_shape)
    budget = STEP_VOXELS[(accelerator, dims)]
    patch = [float(max(s, 2 * MIN_FEATURE_MAP)) for s in median_shape]
    while MIN_BATCH * math.prod(patch) > budget:
        axis = int(np.argmax([p * s for p, s in zip(patch, spacing)]))
        patch[axis] = max(2 * MIN_FEATURE_MAP, patch[axis] * 0.9)
    _, strides = topology(patch, spacing)
    multiple = [math.prod(s[a] for s in strides) for a in range(dims)]
    rounded = [int(math.ceil(p / m) * m) for p, m in zip(patch, multiple)]
    while MIN_BATCH * math.prod(rounded) > budget and any(r > m for r, m in zip(rounded, multiple)):
        axis = int(np.argmax([r * s if r > m else 0 for r, s, m in zip(rounded, spacing, multiple)]))
        rounded[axis] -= multiple[axis]  # rounding up broke the budget: one multiple less on the largest axis
    voxels = math.prod(rounded)
    batch = int(budget // voxels)
    batch = min(batch, int(MAX_BATCH_SHARE * dataset_voxels // voxels), MAX_BATCH[accelerator])
    batch = max(MIN_BATCH, batch)
    samples = max(1, math.ceil(batch / max(1, train_cases)))  # more patches per case than there are cases
    reason = (
        f"median shape {median_shape} in the target spacing, shrunk to fit {budget:,} voxels per step "
        f"({accelerator}) and rounded up to the network's total stride {multiple}; batch {batch} fills the step "
        f"budget (nnU-Net: >= 2, <= 5% of the dataset's voxels; at most {MAX_BATCH[accelerator]} here, a departure)"
    )
    return rounded, math.ceil(batch / samples), samples, Choice("patch_and_batch", [rounded, batch], reason)


def topology(patch: list[float], spacing: list[float]) -> tuple[list[list[int]], list[list[int]]]:
    """nnU-Net's rule: pool an axis by 2 while its feature map stays >= 4 voxels and its current spacing is at most
    twice the finest current spacing (anisotropic axes wait until the others catch up); 3x3(x3) convolutions, 1 on
    an axis whose spacing is still more than twice the finest. Returns (kernel sizes, strides) per level."""
    dims = len(patch)
    size, current = list(patch), list(spacing)
    kernels = [[3 if s / min(current) <= 2 else 1 for s in current]]
    strides = [[1] * dims]
    while len(strides) <= MAX_POOLS[dims]:
        finest = min(current)
        pool = [int(size[a] / 2 >= MIN_FEATURE_MAP and current[a] / finest <= 2) for a in range(dims)]
        if not any(pool):
            break
        step = [2 if p else 1 for p in pool]
        size = [s / t for s, t in zip(size, step)]
        current = [c * t for c, t in zip(current, step)]
        strides.append(step)
        finest = min(current)
        kernels.append([3 if k == 3 or c / finest <= 2 else 1 for k, c in zip(kernels[-1], current)])
    return kernels, strides


def network(kernels: list[list[int]], strides: list[list[int]], accelerator: str) -> Choice:
    """nnU-Net's network: a plain U-Net whose first stage convolves at full resolution (MONAI ``DynUNet`` with the
    kernels and strides of :func:`topology`). On a CPU that stage and its decoder twin are most of the compute
    (3.6x the step time of the same levels with the first stage strided for 2 patches of 40x56x40, 1.8x for 32
    images of 56x40: ``experiments/perf/unet_layouts.py`` on a 2-core CPU), and a budget of minutes buys only a
    few hundred such steps. There the
    first stage downsamples and a transposed convolution restores full resolution before the head, as in MONAI's
    ``UNet`` (medlight ``ResUNet``: residual stages, 3x3(x3) kernels), with nnU-Net's pooling per axis."""
    if accelerator == "gpu":
        value = {
            "class_path": "monai.networks.nets.DynUNet",
            "kernel_size": kernels,
            "strides": strides,
            "upsample_kernel_size": strides[1:],
        }
        reason = (
            f"MONAI DynUNet, {len(strides)} levels: nnU-Net's pooling rule (pool an axis while its feature map stays "
            ">= 4 and its spacing <= 2x the finest; kernel 1 on a still-coarse axis); no deep supervision "
            "(departure: the task's loss takes one output)"
        )
        return Choice("network", value, reason)
    value = {"class_path": "medlight.nets.ResUNet", "strides": [*strides[1:], [1] * len(strides[0])]}
    reason = (
        f"medlight ResUNet, {len(strides)} levels with nnU-Net's pooling per axis, the first stage strided "
        "(MONAI UNet's layout; departure: on CPU nnU-Net's full-resolution stage costs several times the step time, "
        "measured 3.6x in 3D and 1.8x in 2D, so the budget buys more steps); 3x3(x3) kernels, no deep supervision"
    )
    return Choice("network", value, reason)


def filters(levels: int, dims: int, accelerator: str) -> Choice:
    """nnU-Net: 32 feature maps at full resolution, doubling per level, capped at 320 (3D) / 512 (2D)."""
    base = BASE_FILTERS[accelerator]
    value = [min(base * 2**i, MAX_FILTERS[dims]) for i in range(levels)]
    note = "" if accelerator == "gpu" else " (16 on CPU, a departure for compute)"
    return Choice("filters", value, f"{base} at full resolution{note}, doubling per level, capped (nnU-Net)")


def augmentation(mode: str, anisotropic: bool) -> Choice:
    """nnU-Net's default augmentation as far as :class:`~medlight.data.segmentation.Augmentation` offers it:
    rotation (p 0.2; +-30 deg in 3D, +-180 deg in 2D), scaling 0.7-1.4 (p 0.2), Gaussian noise (p 0.1),
    brightness (p 0.15), gamma (p 0.3), mirroring along every axis (p 0.5); elastic deformation off (as in nnU-Net
    v2's defaults). Not offered here: blur, contrast, low-resolution simulation."""
    degrees = 180.0 if mode != "3d" else (15.0 if anisotropic else 30.0)
    value = {
        "flip_prob": 0.5,
        "rotate_prob": 0.2,
        "rotate_degrees": degrees,
        "scale_prob": 0.2,
        "scale_range": 0.3,
        "elastic_prob": 0.0,
        "intensity_prob": 0.15,
        "noise_prob": 0.1,
        "gamma_prob": 0.3,
    }
    note = (
        "; anisotropic 3D: nnU-Net rotates in-plane only, Augmentation rotates about every axis, so +-15 deg"
        if anisotropic and mode == "3d"
        else ""
    )
    return Choice(
        "augmentation",
        value,
        "nnU-Net's default set (rotation, scaling, noise, brightness, gamma, "
        f"mirroring; no elastic){note}; blur, contrast and low-resolution simulation are not offered",
    )


def postprocessing_candidates(fp: Fingerprint, spacing: list[float] | None) -> Choice:
    """nnU-Net decides on validation whether keeping the largest connected component helps; medlight also tries
    removing components smaller than a tenth of the 5th percentile of the smallest class's per-case volume."""
    scale = 1.0
    if spacing is not None:
        scale = float(
            np.prod(fp.median_spacing) / np.prod([s if s > 0 else m for s, m in zip(spacing, fp.median_spacing)])
        )
    per_class = [[c.label_counts.get(v, 0) for c in fp.cases] for v in fp.labels if v != 0]
    smallest = min((np.percentile([n for n in counts if n > 0] or [0], 5) for counts in per_class), default=0.0)
    min_size = max(1, int(0.1 * smallest * scale))
    candidates = [{}, {"keep_largest": True}, {"min_size": min_size}]
    return Choice(
        "postprocessing",
        candidates,
        f"none, keep-largest component, or remove components < {min_size} voxels: chosen after fit on the "
        "validation cases by mean Dice (nnU-Net decides keep-largest the same way)",
    )


def class_balance(fp: Fingerprint) -> Choice:
    """Reported, not acted on: nnU-Net handles imbalance with Dice+CE and foreground oversampling alone."""
    voxels = fp.class_voxels()
    total = sum(voxels.values()) or 1
    share = {fp.labels.get(v, str(v)): round(n / total, 6) for v, n in voxels.items()}
    return Choice(
        "loss",
        "Dice + cross-entropy",
        f"voxel shares {share}; Dice+CE with 33% foreground oversampling handles class imbalance (nnU-Net)",
    )


def label_map(fp: Fingerprint) -> dict[int, int] | None:
    """Label values that are not 0..K (e.g. 0/255 masks) are mapped to 0..K in value order."""
    values = sorted(fp.labels)
    if values == list(range(len(values))):
        return None
    return {v: i for i, v in enumerate(values) if v != i}
