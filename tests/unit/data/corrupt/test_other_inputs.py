"""Corrupt k-space files and lists, classification CSVs and class folders, and split files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from medlight.data.classification import ClassificationDataModule
from medlight.data.kspace.io import discover_kspace, read_kspace
from medlight.data.splits import load_or_create_splits
from tests.unit.data.corrupt.helpers import assert_flagged

K = (np.random.default_rng(0).normal(size=(2, 2, 8, 8)) + 1j).astype(np.complex64)


def read_all(root: Path) -> list:
    """What the k-space data module reads: the listed cases, then every file."""
    return [read_kspace(c["file"]) for c in discover_kspace(root)]


def h5(path: Path, **datasets: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            if isinstance(value, str) and value == "group":
                f.create_group(name)
            elif isinstance(value, tuple):
                f.create_dataset(name, shape=value, dtype=np.complex64, chunks=True)  # declared, never written
            else:
                f[name] = value
    return path


H5_DEFECTS: dict[str, tuple[dict, str]] = {
    "kspace_group": ({"kspace": "group"}, "is an HDF5 Group"),
    "no_kspace": ({"image": K.real}, "no `kspace` dataset"),
    "real_kspace": ({"kspace": K.real}, "not complex"),
    "kspace_2d": ({"kspace": K[0, 0]}, "expected [slices, coils, H, W]"),
    "kspace_nan": ({"kspace": np.where(np.arange(8) == 3, np.nan, K)}, "NaN/Inf"),
    "kspace_zeros": ({"kspace": np.zeros_like(K)}, "all zeros"),
    "kspace_strings": ({"kspace": np.array([b"abc"])}, "not complex"),
    "kspace_huge_unwritten": ({"kspace": (64, 32, 640, 368)}, "claims shape"),
    "rss_group": ({"kspace": K, "reconstruction_rss": "group"}, "is an HDF5 Group"),
    "rss_shape": ({"kspace": K, "reconstruction_rss": np.ones((2, 4, 4), np.float32)}, "reconstruction_rss"),
    "rss_complex": ({"kspace": K, "reconstruction_rss": K[:, 0]}, "expected real values"),
}


@pytest.mark.parametrize("variant", sorted(H5_DEFECTS))
def test_hdf5_defect(tmp_path: Path, variant: str) -> None:
    datasets, expected = H5_DEFECTS[variant]
    h5(tmp_path / "ks" / "good.h5", kspace=K)
    h5(tmp_path / "ks" / "bad.h5", **datasets)
    assert_flagged(lambda: read_all(tmp_path / "ks"), expected, "bad.h5")


BYTE_DEFECTS: dict[str, tuple[str, Callable[[bytes], bytes], str]] = {
    "h5_truncated": (".h5", lambda b: b[: len(b) // 2], "cannot be read"),
    "h5_text": (".h5", lambda b: b"hello" * 100, "cannot be read"),
    "mat_v5": (".mat", lambda b: b"MATLAB 5.0 MAT-file" + bytes(200), "not a MATLAB v7.3"),
    "mat_truncated": (".mat", lambda b: b[: len(b) // 2], "cannot be read"),
    "npy_truncated": (".npy", lambda b: b[: len(b) // 2], "cannot be read as .npy"),
    "npy_text": (".npy", lambda b: b"not numpy", "cannot be read as .npy"),
    "npy_huge_header": (".npy", lambda b: b.replace(b"(2, 2, 8, 8)", b"(9999, 99, 800, 800)"), "cannot be read"),
}


def _write_kind(path: Path) -> None:
    if path.suffix == ".npy":
        np.save(path, K)
    else:
        h5(path, kspace_full=K) if path.suffix == ".mat" else h5(path, kspace=K)


@pytest.mark.parametrize("variant", sorted(BYTE_DEFECTS))
def test_kspace_file_bytes(tmp_path: Path, variant: str) -> None:
    ending, change, expected = BYTE_DEFECTS[variant]
    path = tmp_path / "ks" / f"bad{ending}"
    path.parent.mkdir()
    _write_kind(path)
    path.write_bytes(change(path.read_bytes()))
    assert_flagged(lambda: read_all(tmp_path / "ks"), expected, f"bad{ending}")


MAT_DEFECTS: dict[str, tuple[dict, str]] = {
    "no_kspace_variable": ({"image": K.real}, "no variable named kspace"),
    "kspace_group": ({"kspace_full": "group"}, "is an HDF5 Group"),
    "real_values": ({"kspace_full": K.real}, "not complex"),
    "two_dimensional": ({"kspace_full": K[0, 0]}, "has shape"),
    "compound_without_imag": ({"kspace_full": np.zeros(4, dtype=[("real", "f4")])}, "not complex"),
}


@pytest.mark.parametrize("variant", sorted(MAT_DEFECTS))
def test_mat_defect(tmp_path: Path, variant: str) -> None:
    datasets, expected = MAT_DEFECTS[variant]
    h5(tmp_path / "ks" / "Center01" / "cine_sax.mat", **datasets)
    assert_flagged(lambda: read_all(tmp_path / "ks"), expected, "cine_sax.mat")


def _cases(*entries: object) -> dict:
    return {"cases": list(entries)}


KSPACE_LISTS: dict[str, tuple[object, str]] = {
    "null": (None, "needs {'cases'"),
    "list": ([], "needs {'cases'"),
    "cases_dict": ({"cases": {"file": "a.h5"}}, "must be a list"),
    "cases_string": ({"cases": "a.h5"}, "must be a list"),
    "entry_string": (_cases("a.h5"), "must be an object"),
    "entry_without_center": (_cases({"file": "a.h5", "protocol": "p"}), "must be an object"),
    "file_number_missing": (_cases({"file": 5, "center": "c", "protocol": "p"}), "does not exist"),
    "file_missing": (_cases({"file": "nobody.h5", "center": "c", "protocol": "p"}), "does not exist"),
    "dotdot_outside": (_cases({"file": "../outside.h5", "center": "c", "protocol": "p"}), "outside the dataset"),
    "absolute_outside": (None, "outside the dataset"),  # path filled in by the test
    "symlink_outside": (_cases({"file": "link.h5", "center": "c", "protocol": "p"}), "outside the dataset"),
    "listed_twice": (_cases(*[{"file": "a.h5", "center": "c", "protocol": "p"}] * 2), "more than once"),
}


@pytest.mark.parametrize("variant", sorted(KSPACE_LISTS))
def test_kspace_dataset_json(tmp_path: Path, variant: str) -> None:
    root = tmp_path / "ks"
    h5(root / "a.h5", kspace=K)
    outside = h5(tmp_path / "outside.h5", kspace=K)
    (root / "link.h5").symlink_to(outside)
    spec, expected = KSPACE_LISTS[variant]
    if variant == "absolute_outside":
        spec = _cases({"file": str(outside), "center": "c", "protocol": "p"})
    (root / "dataset.json").write_text(json.dumps(spec))
    assert_flagged(lambda: read_all(root), expected, "dataset.json")


def test_kspace_dataset_json_invalid(tmp_path: Path) -> None:
    h5(tmp_path / "ks" / "a.h5", kspace=K)
    (tmp_path / "ks" / "dataset.json").write_text("{cases")
    assert_flagged(lambda: read_all(tmp_path / "ks"), "needs {'cases'", "dataset.json")


def test_kspace_folder_symlink_outside(tmp_path: Path) -> None:
    h5(tmp_path / "ks" / "a.h5", kspace=K)
    (tmp_path / "ks" / "link.h5").symlink_to(h5(tmp_path / "outside.h5", kspace=K))
    assert_flagged(lambda: read_all(tmp_path / "ks"), "outside the dataset", "link.h5")


# -- classification -------------------------------------------------------------------------------------------
def images(root: Path, n: int = 6, mode: str = "L") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new(mode, (10, 10), 40 * i).save(root / f"p{i}_s.png")
    return root


def classification(**kw: object) -> Callable[[], object]:
    return lambda: ClassificationDataModule(num_folds=2, image_size=(8, 8), **kw).prepare_data()  # type: ignore[arg-type]


CSV_DEFECTS: dict[str, tuple[str, str]] = {
    "dotdot_outside": ("path,label,patient\n../outside.png,0,p0\n", "outside the dataset"),
    "absolute_outside": ("", "outside the dataset"),  # filled in by the test
    "mask_outside": ("path,label,patient,mask\np0_s.png,0,p0,../outside.png\n", "outside the dataset"),
    "symlink_outside": ("path,label,patient\nlink.png,0,p0\n", "outside the dataset"),
    "missing_column": ("path,label\np0_s.png,0\n", "missing column"),
    "empty_csv": ("", "missing column"),
    "empty_path": ("path,label,patient\n,0,p0\n", "empty path"),
    "short_row": ("path,label,patient\np0_s.png\n", "empty label, patient"),
    "unknown_label": ("path,label,patient\np0_s.png,0,p0\np1_s.png,dog,p1\n", "neither a class index"),
    "file_missing": ("path,label,patient\nnobody.png,0,p0\n", "file not found"),
    "truncated_image": ("path,label,patient\ncut.png,0,p0\n", "cannot be read"),
    "mask_shape": ("path,label,patient,mask\np0_s.png,0,p0,small.png\n", "mask shape"),
    "rgba_among_grey": (
        "path,label,patient\n" + "".join(f"p{i}_s.png,0,p{i}\n" for i in range(5)) + "rgba.png,1,q\n",
        "4 channel(s)",
    ),
}
CSV_FILE = {
    "truncated_image": "cut.png",
    "mask_shape": "small.png",
    "rgba_among_grey": "rgba.png",
    "file_missing": "nobody.png",
}


@pytest.mark.parametrize("variant", sorted(CSV_DEFECTS))
def test_classification_csv(tmp_path: Path, variant: str) -> None:
    root = images(tmp_path / "cls")
    Image.new("L", (10, 10)).save(tmp_path / "outside.png")
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    (root / "cut.png").write_bytes((root / "p1_s.png").read_bytes()[:40])
    Image.new("L", (4, 4)).save(root / "small.png")
    Image.new("RGBA", (10, 10)).save(root / "rgba.png")
    text, expected = CSV_DEFECTS[variant]
    if variant == "absolute_outside":
        text = f"path,label,patient\n{tmp_path / 'outside.png'},0,p0\n"
    (root / "slices.csv").write_text(text)
    name = CSV_FILE.get(variant, "slices.csv")
    names = {"class_names": ["neg", "pos"]} if variant == "unknown_label" else {}
    assert_flagged(classification(csv=str(root / "slices.csv"), **names), expected, name)


def test_classification_csv_not_text(tmp_path: Path) -> None:
    (tmp_path / "slices.csv").write_bytes(b"\xff\xfe\x00\x81" * 50)
    assert_flagged(classification(csv=str(tmp_path / "slices.csv")), "not a readable CSV", "slices.csv")


@pytest.mark.parametrize("odd", ["RGBA", "RGB", "LA"])
def test_class_folders_mixed_modes(tmp_path: Path, odd: str) -> None:
    images(tmp_path / "f" / "cat")
    images(tmp_path / "f" / "dog")
    Image.new(odd, (10, 10)).save(tmp_path / "f" / "dog" / "p9_odd.png")
    assert_flagged(classification(image_folder=str(tmp_path / "f")), "channel(s)", "p9_odd.png")


def test_class_folders_symlink_outside(tmp_path: Path) -> None:
    images(tmp_path / "f" / "cat")
    images(tmp_path / "f" / "dog")
    Image.new("L", (10, 10)).save(tmp_path / "outside.png")
    (tmp_path / "f" / "dog" / "p9_link.png").symlink_to(tmp_path / "outside.png")
    assert_flagged(classification(image_folder=str(tmp_path / "f")), "outside the dataset", "p9_link.png")


def test_class_folders_truncated_image(tmp_path: Path) -> None:
    images(tmp_path / "f" / "cat")
    images(tmp_path / "f" / "dog")
    bad = tmp_path / "f" / "dog" / "p1_s.png"
    bad.write_bytes(bad.read_bytes()[:-15])
    assert_flagged(classification(image_folder=str(tmp_path / "f")), "cannot be read", "p1_s.png")


# -- split files ----------------------------------------------------------------------------------------------
IDS = [f"c{i}" for i in range(6)]


def split(**fields: object) -> dict:
    base = {"format": 1, "seed": 0, "num_folds": 2, "test_fraction": 0.2, "case_ids": IDS}
    return {**base, "test": ["c0"], "folds": [["c1", "c2", "c3"], ["c4", "c5"]], **fields}


SPLIT_DEFECTS: dict[str, tuple[object, str]] = {
    "null": (None, "not a medlight split file"),
    "list": ([["c0"]], "not a medlight split file"),
    "no_folds": ({k: v for k, v in split().items() if k != "folds"}, "not a medlight split file"),
    "no_test": ({k: v for k, v in split().items() if k != "test"}, "not a medlight split file"),
    "no_case_ids": ({k: v for k, v in split().items() if k != "case_ids"}, "not a medlight split file"),
    "folds_string": (split(folds="c1,c2"), "must be lists of case ids"),
    "fold_of_numbers": (split(folds=[[1, 2, 3], ["c4", "c5"]]), "must be lists of case ids"),
    "test_string": (split(test="c0"), "must be lists of case ids"),
    "test_also_trains": (split(test=["c0", "c1"]), "in both test and fold 0"),
    "folds_overlap": (split(folds=[["c1", "c2", "c3"], ["c3", "c4", "c5"]]), "in both fold 0 and fold 1"),
    "duplicate_in_fold": (split(folds=[["c1", "c2", "c3", "c2"], ["c4", "c5"]]), "twice in fold 0"),
    "unknown_in_test": (split(test=["c0", "x9"]), "unknown"),
    "unknown_in_fold": (split(folds=[["c1", "c2", "c3", "x9"], ["c4", "c5"]]), "unknown"),
    "unassigned_case": (split(folds=[["c1", "c2"], ["c4", "c5"]]), "in no part"),
    "case_ids_repeated": (split(case_ids=[*IDS, "c1"]), "repeated in case_ids"),
    "other_settings": (split(seed=7), "made with"),
    "fold_count": (split(folds=[["c1", "c2", "c3", "c4", "c5"]]), "(1 folds)"),
    "other_dataset": (split(case_ids=[*IDS, "c6"], folds=[["c1", "c2", "c3", "c6"], ["c4", "c5"]]), "does not match"),
}


@pytest.mark.parametrize("variant", sorted(SPLIT_DEFECTS))
def test_split_file(tmp_path: Path, variant: str) -> None:
    content, expected = SPLIT_DEFECTS[variant]
    (tmp_path / "splits.json").write_text(json.dumps(content))
    assert_flagged(lambda: load_or_create_splits(tmp_path / "splits.json", IDS, 2, 0, 0.2), expected, "splits.json")


def test_split_file_not_json(tmp_path: Path) -> None:
    (tmp_path / "splits.json").write_text("{")
    assert_flagged(lambda: load_or_create_splits(tmp_path / "splits.json", IDS, 2), "not a medlight", "splits.json")


def test_split_fold_out_of_range(tmp_path: Path) -> None:
    splits = load_or_create_splits(tmp_path / "splits.json", IDS, 2, 0, 0.2)
    assert_flagged(lambda: splits.train_ids(2), "fold 2 does not exist", "splits.json")


def test_split_test_cases_not_held_out(tmp_path: Path) -> None:
    (tmp_path / "splits.json").write_text(json.dumps(split()))
    run = lambda: load_or_create_splits(tmp_path / "splits.json", IDS, 2, 0, 0.2, test_cases=["c3"])  # noqa: E731
    assert_flagged(run, "are not in this split file's test set", "splits.json")
