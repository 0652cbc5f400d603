"""Tiny datasets, seeded defects and the assertion every corrupt-input variant makes."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medlight.data.datalist import discover
from medlight.data.integrity import check_dataset
from medlight.data.problems import Problem
from medlight.errors import MedlightError
from tests.conftest import make_msd, make_nnunet_v2, make_png

SHAPE = (8, 8, 6)
SEED = 1234


def msd(root: Path) -> Path:
    return make_msd(root, n=3, shape=SHAPE)


def nnunet_v2(root: Path) -> Path:
    return make_nnunet_v2(root, n=3, shape=SHAPE, channels=2)


def folders(root: Path) -> Path:
    make_msd(root, n=3, shape=SHAPE)
    (root / "dataset.json").unlink()
    return root


def png(root: Path) -> Path:
    return make_png(root, n=3, shape=(12, 14))


def edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def check(root: Path, labels: object = None, label_map: dict | None = None) -> list[Problem]:
    """What ``check-data`` runs: discovery, then every check on every case."""
    return check_dataset(discover(root, labels), progress=False, workers=1, label_map=label_map)  # type: ignore[arg-type]


def outcome(run: Callable[[], object]) -> list[str]:
    """The error lines of a run: a MedlightError's message, or the error Problems it returned.

    Any other exception propagates, so a traceback fails the variant.
    """
    try:
        result = run()
    except MedlightError as err:
        return str(err).splitlines()
    problems = result if isinstance(result, list) else []
    return [p.line() for p in problems if isinstance(p, Problem) and p.severity == "error"]


def assert_flagged(run: Callable[[], object], fragment: str, file_name: str) -> None:
    """One error line names both the failed check (``fragment``) and the file; nothing silently accepted."""
    lines = outcome(run)
    assert any(fragment in line and file_name in line for line in lines), (fragment, file_name, lines)


def assert_clean(run: Callable[[], object]) -> None:
    assert outcome(run) == []


# -- NIfTI defects: each takes the file and a seeded generator ---------------------------------------------
def nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return np.asanyarray(img.dataobj), img.affine  # type: ignore[attr-defined]


def rewrite(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> None:
    nib.save(nib.Nifti1Image(array, nifti(path)[1] if affine is None else affine), str(path))


def patch_header(path: Path, **fields: Any) -> None:
    """Change raw header fields without nibabel tidying them up on save."""
    raw = gzip.decompress(path.read_bytes())
    header = nib.Nifti1Header(binaryblock=raw[:348], check=False)
    for name, value in fields.items():
        if name.startswith("pixdim"):
            header["pixdim"][int(name[-1])] = value
        else:
            header[name] = value
    path.write_bytes(gzip.compress(header.binaryblock + raw[348:]))


def flip_payload(path: Path, rng: np.random.Generator) -> None:
    data = bytearray(path.read_bytes())
    data[int(rng.integers(len(data) // 2, len(data) - 8))] ^= 0xFF  # inside the deflate stream, voxel part
    path.write_bytes(bytes(data))


def flip_crc(path: Path, rng: np.random.Generator) -> None:
    data = bytearray(path.read_bytes())
    data[-8 + int(rng.integers(0, 4))] ^= 0xFF  # the CRC32 of the gzip trailer
    path.write_bytes(bytes(data))


def huge_header(path: Path, rng: np.random.Generator) -> None:
    raw = gzip.decompress(path.read_bytes())
    header = nib.Nifti1Header(binaryblock=raw[:348], check=False)
    header["dim"][:4] = [3, 4096, 4096, int(rng.integers(50, 200))]  # gigabytes claimed by a ~1 KB file
    path.write_bytes(gzip.compress(header.binaryblock + raw[348:]))


def with_value(value: float, where: tuple = (0, 0, 0)) -> Callable[[Path, np.random.Generator], None]:
    def change(path: Path, rng: np.random.Generator) -> None:
        array = nifti(path)[0].astype(np.float32)
        array[where] = value
        rewrite(path, array)

    return change


def label_value(value: int) -> Callable[[Path, np.random.Generator], None]:
    def change(path: Path, rng: np.random.Generator) -> None:
        array = nifti(path)[0].astype(np.int16)
        array[tuple(int(rng.integers(0, s)) for s in array.shape)] = value
        rewrite(path, array)

    return change


Defect = Callable[[Path, np.random.Generator], None]
FILE_DEFECTS: dict[str, tuple[Defect, str]] = {
    "truncated": (lambda p, r: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "unreadable"),
    "truncated_header": (lambda p, r: p.write_bytes(p.read_bytes()[:60]), "unreadable"),
    "empty_file": (lambda p, r: p.write_bytes(b""), "unreadable"),
    "gzip_payload_flip_a": (flip_payload, "unreadable"),
    "gzip_payload_flip_b": (flip_payload, "unreadable"),
    "gzip_crc_flip": (flip_crc, "unreadable"),
    "text_not_nifti": (lambda p, r: p.write_bytes(gzip.compress(b"not an image " * 40)), "unreadable"),
    "png_named_nifti": (lambda p, r: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200)), "unreadable"),
    "huge_header": (huge_header, "data_size"),
    "scl_slope_inf": (lambda p, r: patch_header(p, scl_slope=np.inf), "bad_scaling"),
    "scl_inter_inf": (lambda p, r: patch_header(p, scl_slope=2.0, scl_inter=np.inf), "bad_scaling"),
    "voxel_size_zero": (lambda p, r: patch_header(p, pixdim1=0.0), "bad_spacing"),
    "voxel_size_negative": (lambda p, r: patch_header(p, pixdim2=-1.0), "bad_spacing"),
    "voxel_size_nan": (lambda p, r: patch_header(p, pixdim3=np.nan), "bad_spacing"),
    "voxel_size_inf": (lambda p, r: patch_header(p, pixdim1=np.inf), "bad_spacing"),
    "complex_values": (lambda p, r: rewrite(p, nifti(p)[0].astype(np.complex64)), "complex_values"),
}
IMAGE_DEFECTS: dict[str, tuple[Defect, str]] = {
    **FILE_DEFECTS,
    "nan_voxels": (with_value(np.nan), "non_finite"),
    "inf_voxels": (with_value(np.inf, (1, 2, 3)), "non_finite"),
    "two_dimensional": (lambda p, r: rewrite(p, nifti(p)[0][..., 0]), "wrong_dimensions"),
    "five_dimensional": (lambda p, r: rewrite(p, np.zeros((*SHAPE, 2, 2), np.float32)), "wrong_dimensions"),
    "extra_channel": (lambda p, r: rewrite(p, np.stack([nifti(p)[0]] * 2, -1)), "wrong_channels"),
}
LABEL_DEFECTS: dict[str, tuple[Defect, str]] = {
    **{k: v for k, v in FILE_DEFECTS.items() if k not in ("gzip_payload_flip_b", "voxel_size_inf")},
    "nan_label": (with_value(np.nan), "non_finite"),
    "non_integer": (with_value(0.5), "non_integer_label"),
    "undeclared_value": (label_value(7), "undeclared_label"),
    "negative_value": (label_value(-1), "undeclared_label"),
    "shape_differs": (lambda p, r: rewrite(p, nifti(p)[0][:-1]), "shape_mismatch"),
    "spacing_differs": (lambda p, r: rewrite(p, nifti(p)[0], np.diag([1.0, 1.0, 2.0, 1.0])), "spacing_mismatch"),
    "origin_differs": (
        lambda p, r: rewrite(p, nifti(p)[0], np.array([[1, 0, 0, 5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])),
        "geometry_mismatch",
    ),
    "four_dimensional": (lambda p, r: rewrite(p, np.stack([nifti(p)[0]] * 2, -1)), "wrong_dimensions"),
}
