"""Classification items from files: 2D images, or 2D slices of 3D volumes with a per-slice label rule.

Every item is a dict: ``image`` (C, H, W) float32 resized to the configured size, ``label`` (class index),
``mask`` (1, H, W) organ mask in [0, 1] (zeros without one), ``has_mask``, ``unit`` (the patient, or
pseudo-patient, it belongs to) and ``slice_index``. Intensities are z-scored per volume and channel,
inside the organ mask when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from medlight.data.integrity import UnreadableFile, read_volume
from medlight.errors import DatasetError
from medlight.ops.normalisation import zscore


@dataclass(frozen=True)
class VolumeSlices:
    """Slices of 3D volumes, labelled by a rule on each slice's label map.

    Args:
        dataset: folder. With ``image_files`` set, every sub-folder holding those files is a case
            (case id = folder name); otherwise the folder is any layout :func:`medlight.data.datalist.discover` reads.
        image_files: channel file names inside each case folder (case-folder layout).
        label_file: label file name inside each case folder (case-folder layout).
        mask_file: organ mask file name inside each case folder, used when ``mask`` is ``file``.
        mask: attention supervision: a mask ``file``, the ``label`` map itself (> 0), or ``none``.
        axis: volume axis across which slices are taken.
        positive_labels: label values that make a slice positive (empty: any value > 0).
        min_positive_pixels: a slice is positive with at least this many positive pixels.
        min_mask_pixels: slices whose organ mask (or non-zero image, without a mask) has fewer pixels are left out.
        hemispheres: split each slice at the middle of the mask's extent along ``split_axis`` into two
            pseudo-patients ``<case>_A`` and ``<case>_B`` (grouped by case in the folds).
        split_axis: volume axis split by ``hemispheres``.
    """

    dataset: str
    image_files: list[str] = field(default_factory=list)
    label_file: str | None = None
    mask_file: str | None = None
    mask: Literal["file", "label", "none"] = "none"
    axis: int = 2
    positive_labels: list[int] = field(default_factory=list)
    min_positive_pixels: int = 1
    min_mask_pixels: int = 0
    hemispheres: bool = False
    split_axis: int = 0


def read_array(path: Path) -> np.ndarray:
    """A file's array as float32; a DatasetError naming the file if it cannot be read."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        return np.asarray(read_volume(path).array, dtype=np.float32)
    except UnreadableFile as err:
        raise DatasetError(f"{path}: {err}") from err


def resize(array: np.ndarray, size: tuple[int, int], mode: str) -> torch.Tensor:
    """(C, h, w) -> (C, *size) tensor; ``bilinear`` for images, ``area`` for masks (keeps fractions)."""
    x = torch.from_numpy(np.ascontiguousarray(array))[None]
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(x, size=size, mode=mode, **kwargs)[0]


def image_item(path: Path, label: int, unit: str, size: tuple[int, int], mask_path: Path | None) -> dict:
    """One item from a 2D image file (grey or RGB), with an optional mask file."""
    pixels = read_array(path)
    image = pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)
    if image.ndim != 3:
        raise DatasetError(f"{path}: expected a 2D image, found an array of shape {pixels.shape}")
    mask = None
    if mask_path is not None:
        mask = read_array(mask_path) > 0
        if mask.shape != image.shape[1:]:
            raise DatasetError(f"{mask_path}: mask shape {mask.shape} differs from its image {path} {image.shape[1:]}")
    return make_item(zscore(image, mask), mask, label, unit, 0, size)


def make_item(image: np.ndarray, mask: np.ndarray | None, label: int, unit: str, index: int, size: tuple) -> dict:
    has_mask = mask is not None
    mask_t = resize(mask[None].astype(np.float32), size, "area") if has_mask else torch.zeros(1, *size)  # type: ignore[index]
    return {
        "image": resize(image, size, "bilinear"),
        "label": int(label),
        "mask": mask_t,
        "has_mask": has_mask,
        "unit": unit,
        "slice_index": index,
    }


def volume_items(
    case_id: str, images: list[Path], label: Path, mask_file: Path | None, spec: VolumeSlices, size: tuple
) -> list[dict]:
    """Items of one volume (two pseudo-patients with ``hemispheres``), by the slice label rule."""
    channels = [read_array(p) for p in images]
    image = np.concatenate([c[None] if c.ndim == 3 else np.moveaxis(c, -1, 0) for c in channels])
    seg = read_array(label)
    organ = (
        (read_array(mask_file) > 0)
        if spec.mask == "file" and mask_file
        else (seg > 0 if spec.mask == "label" else None)
    )
    for path, arr in [(label, seg), *([(mask_file, organ)] if organ is not None and mask_file else [])]:
        if arr.shape != image.shape[1:]:
            raise DatasetError(f"{path}: shape {arr.shape} differs from the image {images[0]} {image.shape[1:]}")
    image = zscore(image, organ)
    positive = np.isin(seg, spec.positive_labels) if spec.positive_labels else seg > 0
    region = organ if organ is not None else np.abs(image).sum(0) > 0
    parts = {case_id: slice(None)}
    if spec.hemispheres:
        extent = np.nonzero(region.any(axis=tuple(a for a in range(3) if a != spec.split_axis)))[0]
        middle = int(extent.min() + extent.max() + 1) // 2 if len(extent) else image.shape[1 + spec.split_axis] // 2
        parts = {f"{case_id}_A": slice(0, middle), f"{case_id}_B": slice(middle, None)}
    items = []
    for unit, part in parts.items():
        cut = [slice(None)] * 3
        cut[spec.split_axis] = part
        sub = {"image": image[(slice(None), *cut)], "pos": positive[tuple(cut)], "region": region[tuple(cut)]}
        sub_organ = organ[tuple(cut)] if organ is not None else None
        items += _slice_items(sub, sub_organ, unit, spec, size)
    return items


def _slice_items(sub: dict, organ: np.ndarray | None, unit: str, spec: VolumeSlices, size: tuple) -> list[dict]:
    axis = spec.axis
    items = []
    for k in range(sub["pos"].shape[axis]):
        region = np.take(sub["region"], k, axis)
        if region.sum() < max(1, spec.min_mask_pixels):
            continue
        label = int(np.take(sub["pos"], k, axis).sum() >= spec.min_positive_pixels)
        mask = np.take(organ, k, axis) if organ is not None else None
        items.append(make_item(np.take(sub["image"], k, axis + 1), mask, label, unit, k, size))
    return items
