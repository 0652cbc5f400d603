"""Integrity checks: read every file of every case once and list everything that is wrong.

Checks per case: the file is readable (not truncated, really NIfTI/PNG...), the image has the expected
number of dimensions and channels, channel files agree in shape, image and label agree in shape, spacing
and orientation/origin, no NaN/Inf voxels, label values are integers declared by the dataset. Warnings
(never blocking): a label without foreground, a label identical to another case's label.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from tqdm import tqdm

from medlight.data.datalist import IMAGE_2D_ENDINGS, Case, DatasetDescription, strip_ending
from medlight.data.problems import Problem

# deflate cannot expand data more than ~1032 times: a gzip file claiming more voxels is lying
MAX_GZIP_RATIO = 1100


@dataclass
class Volume:
    """The parts of a file the checks need.

    Attributes:
        array: the voxels.
        spacing: voxel size per spatial axis.
        affine: voxel -> world transform (None for 2D image files).
        issues: (check, message) of header values that make the file unusable although it reads.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray | None
    issues: list[tuple[str, str]] = field(default_factory=list)


class UnreadableFile(Exception):
    """A file could not be read; the message says why, ``check`` names the failed check."""

    def __init__(self, message: str, check: str = "unreadable") -> None:
        super().__init__(message)
        self.check = check


def read_volume(path: Path) -> Volume:
    """Read a NIfTI volume or a 2D image fully, so truncated and corrupted files are caught.

    The header's data size is compared with the file size before any voxel is read, and a gzip stream is
    decompressed to its end, so its CRC is checked.
    """
    ending = strip_ending(path.name)[1].lower()
    try:
        if ending in IMAGE_2D_ENDINGS:
            with Image.open(path) as picture:
                picture.verify()  # chunk checksums and the end of the file: decoding alone misses a cut tail
            with Image.open(path) as picture:
                return Volume(np.asarray(picture), (1.0, 1.0), None)
        header = _raw_header(path, ending == ".nii.gz")  # as stored: nibabel's image tidies scaling away
        _check_header(path, header)
        nii = nib.load(str(path))
        if not isinstance(nii, (nib.Nifti1Image, nib.Nifti2Image)):
            raise UnreadableFile(f"not a NIfTI file (nibabel read it as {type(nii).__name__})")
        if ending == ".nii.gz":
            nii = type(nii).from_bytes(gzip.decompress(path.read_bytes()))  # CRC checked at the stream's end
        array = np.asanyarray(nii.dataobj)
        spacing = tuple(float(z) for z in header["pixdim"][1 : 1 + min(3, array.ndim)])
        return Volume(array, spacing, nii.affine, _header_issues(array, spacing))
    except UnreadableFile:
        raise
    except Exception as err:  # nibabel/PIL/zlib/gzip raise many types for broken files
        raise UnreadableFile(f"cannot be read ({type(err).__name__}: {err})") from err


def _raw_header(path: Path, gz: bool) -> nib.Nifti1Header:
    with (gzip.open if gz else open)(path, "rb") as f:
        block = f.read(540)
    if len(block) < 348:
        raise UnreadableFile(f"{len(block)} bytes: too short for a NIfTI header")
    klass = nib.Nifti2Header if nib.Nifti2Header.may_contain_header(block) else nib.Nifti1Header
    if not klass.may_contain_header(block):
        raise UnreadableFile("not a NIfTI file (no NIfTI-1/2 header)")
    return klass.from_fileobj(io.BytesIO(block), check=False)  # guesses the byte order


def _check_header(path: Path, header) -> None:
    """Refuse a header whose voxels cannot fit in the file, or whose scaling is not finite, before reading."""
    claimed = int(header.get_data_offset()) + int(np.prod(header.get_data_shape(), dtype=np.float64)) * int(
        header.get_data_dtype().itemsize
    )
    size = path.stat().st_size
    gz = path.name.lower().endswith(".gz")
    if claimed > (size * MAX_GZIP_RATIO if gz else size):
        raise UnreadableFile(
            f"header claims {claimed} bytes of data (shape {header.get_data_shape()}) but the file has only "
            f"{size} bytes{' compressed' if gz else ''}: truncated or corrupt header",
            "data_size",
        )
    slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    # NaN or 0 slope means "no scaling" (nibabel writes NaN); an infinite slope, or a real slope with a
    # non-finite intercept, scales every voxel to Inf/NaN in readers that apply it
    if np.isinf(slope) or (np.isfinite(slope) and slope != 0 and not np.isfinite(inter)):
        raise UnreadableFile(f"scl_slope={slope:g}, scl_inter={inter:g}: voxel scaling is not finite", "bad_scaling")


def _header_issues(array: np.ndarray, spacing: tuple[float, ...]) -> list[tuple[str, str]]:
    issues = []
    if not all(np.isfinite(z) and z > 0 for z in spacing):
        issues.append(("bad_spacing", f"voxel size {_fmt(spacing)} must be finite and positive"))
    if np.iscomplexobj(array):
        issues.append(("complex_values", f"voxels are complex ({array.dtype}); expected real values"))
    return issues


CaseVisitor = Callable[[Case, list[Volume], Volume | None], None]


def check_dataset(
    desc: DatasetDescription,
    progress: bool = True,
    workers: int | None = None,
    label_map: dict[int, int] | None = None,
    visit: CaseVisitor | None = None,
) -> list[Problem]:
    """Run every check on every case of ``desc`` and return all problems, discovery problems included.

    Args:
        desc: the dataset.
        progress: show a progress bar.
        workers: reading threads.
        label_map: label values relabelled before use (``Preprocessing.label_map``, e.g. ``{255: 1}``);
            declared values are checked after it.
        visit: ``visit(case, images, label)`` sees each error-free case's files as they are read (one pass over
            the data for statistics, e.g. :mod:`medlight.planning.fingerprint`); it runs in worker threads.
    """
    workers = workers or min(4, os.cpu_count() or 1)
    label_map = {int(k): int(v) for k, v in (label_map or {}).items()}
    with ThreadPoolExecutor(workers) as pool:
        results = list(
            tqdm(
                pool.map(lambda c: _check_case(c, desc, label_map, visit), desc.cases),
                total=len(desc.cases),
                desc="check-data",
                disable=not progress,
                leave=False,
            )
        )
    problems = list(desc.problems)
    label_hashes: dict[str, str] = {}
    problems += _inconsistent_channels(desc, [r[2] for r in results])
    for case, (case_problems, label_hash, _) in zip(desc.cases, results):
        problems += case_problems
        if label_hash is None:
            continue
        if label_hash in label_hashes:
            problems.append(
                Problem(
                    case.label or case.images[0],
                    "duplicate_label",
                    f"label is identical to the label of case {label_hashes[label_hash]}",
                    case.case_id,
                    "warning",
                )
            )
        else:
            label_hashes[label_hash] = case.case_id
    problems += _duplicates_of_orphans(desc, label_hashes)
    return problems


def _inconsistent_channels(desc: DatasetDescription, channels: list[int]) -> list[Problem]:
    """Without a declared channel count, every case must have the count most cases have."""
    counts = [c for c in channels if c]
    if desc.channels_declared or not counts:
        return []
    usual = Counter(counts).most_common(1)[0][0]
    return [
        Problem(case.images[0], "wrong_channels", f"image has {n} channel(s); most cases have {usual}", case.case_id)
        for case, n in zip(desc.cases, channels)
        if n and n != usual
    ]


def _duplicates_of_orphans(desc: DatasetDescription, label_hashes: dict[str, str]) -> list[Problem]:
    """An orphan label that equals another case's label is a strong hint of a mis-paired dataset."""
    out = []
    for problem in desc.problems:
        if problem.check != "missing_image" or not problem.path.is_file():
            continue
        try:
            digest = hashlib.sha1(read_volume(problem.path).array.tobytes()).hexdigest()
        except UnreadableFile:
            continue
        if digest in label_hashes:
            out.append(
                Problem(
                    problem.path,
                    "duplicate_label",
                    f"orphan label is identical to the label of case {label_hashes[digest]}",
                    problem.case_id,
                    "warning",
                )
            )
    return out


def _check_case(
    case: Case, desc: DatasetDescription, label_map: dict[int, int], visit: CaseVisitor | None = None
) -> tuple[list[Problem], str | None, int]:
    try:
        return _check_case_files(case, desc, label_map, visit)
    except Exception as err:  # a checker bug must not hide the other cases' problems
        path = case.images[0] if case.images else Path(case.case_id)
        return (
            [Problem(path, "check_failed", f"could not be checked ({type(err).__name__}: {err})", case.case_id)],
            None,
            0,
        )


def _check_case_files(
    case: Case, desc: DatasetDescription, label_map: dict[int, int], visit: CaseVisitor | None = None
) -> tuple[list[Problem], str | None, int]:
    problems: list[Problem] = []

    def fail(path: Path, check: str, message: str, severity: str = "error") -> None:
        problems.append(Problem(path, check, message, case.case_id, severity))  # type: ignore[arg-type]

    def read(path: Path) -> Volume | None:
        try:
            vol = read_volume(path)
        except UnreadableFile as err:
            fail(path, err.check, str(err))
            return None
        for check, message in vol.issues:
            fail(path, check, message)
        return None if vol.issues else vol

    images = [(path, vol) for path in case.images if (vol := read(path)) is not None]
    label = read(case.label) if case.label is not None else None
    spatial_shape, channels = _check_images(images, desc, fail)
    if label is None or case.label is None:
        return problems, None, channels
    _check_label(case.label, label, images, spatial_shape, desc, label_map, fail)
    if visit is not None and not any(p.severity == "error" for p in problems):
        visit(case, [vol for _, vol in images], label)
    return problems, hashlib.sha1(label.array.tobytes()).hexdigest(), channels


def _spatial_and_channels(vol: Volume, dims: int) -> tuple[tuple[int, ...], int] | None:
    """Split an image array into (spatial shape, channels); None when its dimensionality is wrong."""
    shape = vol.array.shape
    if dims == 2:
        if len(shape) == 2:
            return shape, 1
        return (shape[:2], shape[2]) if len(shape) == 3 else None
    if len(shape) == 3:
        return shape, 1
    if len(shape) == 4:
        return shape[:3], shape[3]
    if len(shape) == 5 and shape[3] == 1:  # NIfTI stores vector images as x,y,z,t=1,c
        return shape[:3], shape[4]
    return None


def _check_images(
    images: list[tuple[Path, Volume]], desc: DatasetDescription, fail
) -> tuple[tuple[int, ...] | None, int]:
    spatial_shape: tuple[int, ...] | None = None
    channels = 0
    for path, vol in images:
        split = _spatial_and_channels(vol, desc.spatial_dims)
        if split is None:
            fail(
                path,
                "wrong_dimensions",
                f"image has shape {vol.array.shape}; expected {desc.spatial_dims} spatial dimensions"
                " (plus optionally channels)",
            )
            continue
        shape, n = split
        channels += n
        if spatial_shape is None:
            spatial_shape = shape
        elif shape != spatial_shape:
            fail(path, "shape_mismatch", f"channel file has shape {shape}, other channels {spatial_shape}")
        if np.issubdtype(vol.array.dtype, np.floating) and not np.isfinite(vol.array).all():
            bad = int((~np.isfinite(vol.array)).sum())
            fail(path, "non_finite", f"{bad} NaN/Inf voxel(s) in the image")
    expected = len(desc.channels)
    rgb = desc.spatial_dims == 2 and expected == 1 and channels in (3, 4)
    if desc.channels_declared and channels and channels != expected and not rgb:
        fail(
            images[0][0],
            "wrong_channels",
            f"image has {channels} channel(s); the dataset declares {expected} ({', '.join(desc.channels)})",
        )
    return spatial_shape, channels


def _check_label(
    path: Path,
    label: Volume,
    images: list[tuple[Path, Volume]],
    spatial_shape: tuple[int, ...] | None,
    desc: DatasetDescription,
    label_map: dict[int, int],
    fail,
) -> None:
    array = label.array
    if desc.spatial_dims == 2 and array.ndim == 3 and array.shape[2] in (3, 4):
        if not (array[..., :3] == array[..., :1]).all():
            fail(path, "wrong_channels", "2D mask is a colour image; expected one channel of label values")
            return
        array = array[..., 0]
    if array.ndim != desc.spatial_dims:
        fail(path, "wrong_dimensions", f"label has shape {array.shape}; expected {desc.spatial_dims} dimensions")
        return
    if spatial_shape is not None and array.shape != spatial_shape:
        fail(path, "shape_mismatch", f"label shape {array.shape} differs from image shape {spatial_shape}")
        return
    if images:
        _check_geometry(path, label, images[0][1], fail)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            fail(path, "non_finite", "NaN/Inf values in the label")
            return
        if not np.array_equal(array, np.round(array)):
            fail(path, "non_integer_label", "label holds non-integer values")
            return
    values = np.array(sorted({label_map.get(v, v) for v in np.unique(array).astype(np.int64).tolist()}))
    if desc.labels:
        undeclared = sorted(set(values.tolist()) - set(desc.labels))
        if undeclared:
            fail(
                path,
                "undeclared_label",
                f"label values {undeclared} are not declared (declared: {sorted(desc.labels)})",
            )
    if values.max(initial=0) == 0:
        fail(path, "empty_label", "label has no foreground voxel", "warning")


def _check_geometry(path: Path, label: Volume, image: Volume, fail) -> None:
    if len(label.spacing) != len(image.spacing):
        return  # a dimensionality problem, already reported
    if not np.allclose(label.spacing, image.spacing, rtol=1e-3, atol=1e-4):
        fail(path, "spacing_mismatch", f"label spacing {_fmt(label.spacing)} differs from image {_fmt(image.spacing)}")
    elif (
        label.affine is not None
        and image.affine is not None
        and not np.allclose(label.affine, image.affine, rtol=1e-3, atol=1e-3)
    ):
        fail(path, "geometry_mismatch", "label origin/orientation (affine) differs from the image's")


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def bad_case_ids(problems: list[Problem]) -> set[str]:
    """Ids of the cases with at least one error."""
    return {p.case_id for p in problems if p.severity == "error" and p.case_id is not None}
