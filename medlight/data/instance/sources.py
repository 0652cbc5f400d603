"""Where 2D instance data comes from: image + instance-map pairs, or per-slice components of 3D labels.

Both readers return :class:`InstanceSlice` records held in memory (the examples medlight ships are small):
a (C, H, W) float32 image, z-scored per channel, and an (H, W) int32 instance map (0 background, each
object its own id). Every slice belongs to a ``volume`` so that splits keep a volume's slices together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from medlight.data.datalist import discover, strip_ending
from medlight.data.integrity import UnreadableFile, read_volume
from medlight.errors import DatasetError
from medlight.ops.instances import slice_instances
from medlight.ops.normalisation import zscore

ENDINGS = (".png", ".nii", ".nii.gz")


@dataclass
class InstanceSlice:
    """One 2D example: image (C, H, W), instance map (H, W), its volume and slice id."""

    volume: str
    case_id: str
    image: NDArray[np.float32]
    instances: NDArray[np.int32]


def _read(path: Path) -> NDArray:
    try:
        return np.asarray(read_volume(path).array)
    except UnreadableFile as err:
        raise DatasetError(f"{path}: {err}") from err


def read_folder(root: Path) -> list[InstanceSlice]:
    """Pairs ``<root>/images/<name>`` and ``<root>/instances/<name>`` (PNG or 2D NIfTI), matched by name.

    Raises:
        DatasetError: a missing folder or partner file, an unreadable file, a non-2D or non-integer
            instance map, or an image whose size differs from its instance map (the message names the file).
    """
    image_dir, instance_dir = root / "images", root / "instances"
    for folder in (image_dir, instance_dir):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: missing (an instance dataset holds images/ and instances/)")
    out = []
    for path in sorted(p for p in image_dir.iterdir() if strip_ending(p.name)[1].lower() in ENDINGS):
        stem = strip_ending(path.name)[0]
        partners = [instance_dir / (stem + e) for e in ENDINGS if (instance_dir / (stem + e)).is_file()]
        if not partners:
            raise DatasetError(f"{path}: no instance map {instance_dir}/{stem}.(png|nii|nii.gz)")
        image, instances = _read(path), _read(partners[0])
        if instances.ndim != 2 or not np.issubdtype(instances.dtype, np.integer):
            raise DatasetError(
                f"{partners[0]}: an instance map must be a 2D integer image, not {instances.dtype} "
                f"of shape {instances.shape}"
            )
        image = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)  # channels last on disk
        if image.shape[1:] != instances.shape:
            raise DatasetError(f"{path}: size {image.shape[1:]} differs from its instance map {instances.shape}")
        out.append(InstanceSlice(stem, stem, zscore(image), instances.astype(np.int32)))
    if not out:
        raise DatasetError(f"{image_dir}: no images ({', '.join(ENDINGS)})")
    return out


def volume_files(root: Path, label_file: str | None, image_files: Sequence[str]) -> list[tuple[str, list[Path], Path]]:
    """(volume id, image files, label file) of a 3D semantic dataset.

    With ``label_file`` set, every folder below ``root`` holding it is a case (BraTS-style case folders,
    images named by ``image_files``); otherwise the dataset is read by :func:`medlight.data.datalist.discover`.
    """
    if label_file is None:
        return [(c.case_id, list(c.images), Path(c.label)) for c in discover(root).cases if c.label is not None]
    cases = []
    for label in sorted(root.rglob(label_file)):
        images = [label.parent / name for name in image_files]
        missing = [str(p) for p in images if not p.is_file()]
        if missing:
            raise DatasetError(f"{label.parent}: missing image file(s) {', '.join(missing)}")
        cases.append((label.parent.name, images, label))
    return cases


def derive_from_volume(
    volume: str,
    image_paths: Sequence[Path],
    label_path: Path,
    groups: Sequence[Sequence[int]],
    axis: int = 2,
    min_size: int = 1,
) -> list[InstanceSlice]:
    """Slices of one volume that hold at least one object: connected components of each label group.

    Each group (e.g. ``[4]`` for BraTS enhancing tumour, or ``[1], [2]`` for the two hippocampus parts)
    is labelled on its own per slice, so objects of different groups stay apart even where they touch.
    The image is cropped to the bounding box of its non-zero voxels (the brain) and z-scored there.
    """
    labels = _read(label_path)
    channels = [_read(p) for p in image_paths]
    for path, channel in zip(image_paths, channels):
        if channel.shape != labels.shape:
            raise DatasetError(f"{path}: shape {channel.shape} differs from its label {label_path} {labels.shape}")
    image = np.stack(channels)
    inside = np.any(image != 0, axis=0)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(inside)) if inside.any() else ()
    image, labels, inside = image[(slice(None), *box)], labels[box], inside[box]
    image = zscore(image, inside)
    instances = np.zeros(labels.shape, np.int32)
    for group in groups:
        objects = slice_instances(labels, tuple(group), axis=axis, min_size=min_size)
        instances = np.where(
            objects > 0, objects + instances.max(axis=tuple(i for i in range(3) if i != axis), keepdims=True), instances
        )
    out = []
    for i in range(labels.shape[axis]):
        objects = np.take(instances, i, axis=axis)
        if objects.any():
            slice_image = np.ascontiguousarray(np.take(image, i, axis=axis + 1))  # a copy, not a view of the volume
            out.append(InstanceSlice(volume, f"{volume}_s{i:03d}", slice_image, np.ascontiguousarray(objects)))
    return out
