"""k-space readers on small files written here: HDF5 (fastMRI), MATLAB v7.3 (CMRxRecon), NumPy; bad files."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from medlight.data.kspace.io import discover_kspace, read_kspace
from medlight.errors import DatasetError

RNG = np.random.default_rng(0)


def _kspace(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(np.complex64)


def test_fastmri_hdf5_with_identifiers(tmp_path: Path) -> None:
    k = _kspace(3, 4, 8, 10)
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=k)
        f.create_dataset("reconstruction_rss", data=np.ones((3, 8, 10), np.float32))
        f.attrs["center"] = "siteB"
        f.attrs["protocol"] = "flair"
    volume = read_kspace(path)
    assert volume.kspace.shape == (3, 4, 8, 10) and volume.kspace.dtype == np.complex64
    np.testing.assert_array_equal(volume.kspace, k)
    assert (volume.center, volume.protocol) == ("siteB", "flair")
    assert volume.target is not None and volume.target.shape == (3, 8, 10)


def test_single_coil_hdf5_gets_a_coil_axis(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "sc.h5", "w") as f:
        f.create_dataset("kspace", data=_kspace(2, 8, 8))
    volume = read_kspace(tmp_path / "sc.h5")
    assert volume.kspace.shape == (2, 1, 8, 8) and volume.center == "unknown"


def test_cmrxrecon_mat_v73(tmp_path: Path) -> None:
    # MATLAB [kx=10, ky=8, coils=3, slices=2, frames=4] is stored as h5py (4, 2, 3, 8, 10) with real/imag fields
    k = _kspace(4, 2, 3, 8, 10)
    compound = np.empty(k.shape, dtype=[("real", "<f4"), ("imag", "<f4")])
    compound["real"], compound["imag"] = k.real, k.imag
    path = tmp_path / "Center003" / "Siemens" / "P001" / "cine_sax.mat"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace_full", data=compound)
    volume = read_kspace(path)
    assert volume.kspace.shape == (8, 3, 10, 8)  # [frames*slices, coils, kx, ky]: ky (phase encoding) last
    np.testing.assert_allclose(volume.kspace[5, 2], k[2, 1, 2].T)
    assert (volume.center, volume.protocol) == ("Center003", "cine_sax")


def test_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", _kspace(4, 8, 8))
    assert read_kspace(tmp_path / "a.npy").kspace.shape == (1, 4, 8, 8)


@pytest.mark.parametrize(
    "writer,message",
    [
        (lambda p: p.with_suffix(".h5").write_bytes(b"not hdf5 at all"), "cannot be read as HDF5"),
        (lambda p: np.save(p.with_suffix(".npy"), np.ones((2, 8, 8), np.float32)), "not complex"),
        (lambda p: np.save(p.with_suffix(".npy"), _kspace(8, 8)), "expected \\[slices, coils, H, W\\]"),
        (lambda p: np.save(p.with_suffix(".npy"), np.full((1, 2, 4, 4), np.nan, np.complex64)), "NaN/Inf"),
        (lambda p: p.with_suffix(".mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200)), "v7.3"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path: Path, writer, message: str) -> None:
    writer(tmp_path / "bad")
    path = next(tmp_path.iterdir())
    with pytest.raises(DatasetError, match=message) as err:
        read_kspace(path)
    assert str(path) in str(err.value)


def test_hdf5_without_kspace(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("image", data=np.ones(3))
    with pytest.raises(DatasetError, match="no `kspace` dataset"):
        read_kspace(tmp_path / "x.h5")


def test_discover_with_and_without_dataset_json(tmp_path: Path) -> None:
    for name, center in (("a", "A"), ("b", "B")):
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f.create_dataset("kspace", data=_kspace(1, 2, 4, 4))
            f.attrs["center"], f.attrs["protocol"] = center, "t1"
    cases = discover_kspace(tmp_path)
    assert [(c["case_id"], c["center"], c["protocol"]) for c in cases] == [("a", "A", "t1"), ("b", "B", "t1")]
    listing = {"cases": [{"file": "b.h5", "center": "X", "protocol": "flair"}]}
    (tmp_path / "dataset.json").write_text(json.dumps(listing))
    assert [(c["case_id"], c["center"]) for c in discover_kspace(tmp_path)] == [("b", "X")]
    (tmp_path / "dataset.json").write_text('{"files": []}')
    with pytest.raises(DatasetError, match="dataset.json"):
        discover_kspace(tmp_path)
