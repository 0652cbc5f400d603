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


# -- BART .cfl/.hdr --------------------------------------------------------------------------------------
def test_bart_cfl_round_trip_and_2d_layout(tmp_path: Path) -> None:
    from medlight.data.kspace.io import read_cfl, write_cfl

    k = _kspace(9, 7, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2)  # odd, non-square; 2 slices in BART's SLICE_DIM (13)
    path = write_cfl(tmp_path / "Center_X" / "brain", k)
    np.testing.assert_array_equal(read_cfl(path), k)
    assert path.with_suffix(".hdr").read_text().startswith("# Dimensions\n9 7 1 3")
    volume = read_kspace(path)
    assert volume.kspace.shape == (2, 3, 9, 7)  # [slices, coils, readout, phase encoding]
    np.testing.assert_array_equal(volume.kspace[1, 2], k[:, :, 0, 2, ..., 1].reshape(9, 7))
    assert (volume.center, volume.protocol) == ("Center_X", "brain")


def test_bart_3d_partitions_become_slices(tmp_path: Path) -> None:
    from medlight.data.kspace.io import write_cfl

    k = _kspace(8, 6, 4, 2)
    volume = read_kspace(write_cfl(tmp_path / "vol3d", k))
    assert volume.kspace.shape == (4, 2, 8, 6)
    hybrid = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(k, axes=2), axis=2, norm="ortho"), axes=2)
    np.testing.assert_allclose(volume.kspace[3, 1], hybrid[:, :, 3, 1], atol=1e-5)


@pytest.mark.parametrize(
    "header,data_size,message",
    [(None, 8, "header vol.hdr not found"), ("# Dimensions\n", 8, "no dimensions"),
     ("# Dimensions\n2 2\n", 8, "need 4"), ("# Dimensions\n4 2\n", 8, "expected \\[readout, phase1, phase2, coils")],
)  # fmt: skip
def test_bad_bart_files_name_the_file(tmp_path: Path, header: str | None, data_size: int, message: str) -> None:
    np.zeros(data_size, np.complex64).tofile(tmp_path / "vol.cfl")
    if header is not None:
        (tmp_path / "vol.hdr").write_text(header)
    with pytest.raises(DatasetError, match=message) as err:
        read_kspace(tmp_path / "vol.cfl")
    assert "vol." in str(err.value)


# -- ISMRMRD ---------------------------------------------------------------------------------------------
def _write_ismrmrd(path: Path, kspace: np.ndarray, oversampling: int = 2, noise_scan: bool = True) -> None:
    """Write [slices, coils, readout, lines] k-space as ISMRMRD acquisitions (readout ``oversampling``-fold)."""
    import ismrmrd

    slices, coils, nx, ny = kspace.shape
    xsd = ismrmrd.xsd
    space = lambda x, fov: xsd.encodingSpaceType(  # noqa: E731
        matrixSize=xsd.matrixSizeType(x=x, y=ny, z=1), fieldOfView_mm=xsd.fieldOfViewMm(x=fov, y=180.0, z=5.0)
    )
    encoding = xsd.encodingType(
        encodedSpace=space(nx, oversampling * 200.0),
        reconSpace=space(nx // oversampling, 200.0),
        encodingLimits=xsd.encodingLimitsType(),
        trajectory=xsd.trajectoryType.CARTESIAN,
    )
    header = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=63_500_000),
        encoding=[encoding],
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            receiverChannels=coils, institutionName="Hospital Q"
        ),
        measurementInformation=xsd.measurementInformationType(patientPosition="HFS", protocolName="t2_tse"),
    )
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dset.write_xml_header(xsd.ToXML(header))
    if noise_scan:
        noise = ismrmrd.Acquisition.from_array(_kspace(coils, nx))
        noise.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        dset.append_acquisition(noise)
    for s in range(slices):
        for line in range(ny):
            acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(kspace[s, :, :, line]))
            acq.idx.kspace_encode_step_1, acq.idx.slice, acq.center_sample = line, s, nx // 2
            dset.append_acquisition(acq)
    dset.close()


def test_ismrmrd_acquisitions_with_readout_oversampling(tmp_path: Path) -> None:
    from medlight.ops.kspace import crop_readout

    k = _kspace(2, 3, 18, 11)  # readout 2x oversampled (18 -> 9), 11 phase-encoding lines: odd, non-square
    _write_ismrmrd(tmp_path / "scan.h5", k)
    volume = read_kspace(tmp_path / "scan.h5")
    assert volume.kspace.shape == (2, 3, 9, 11)
    np.testing.assert_allclose(volume.kspace, crop_readout(k, 9), atol=1e-5)
    assert (volume.center, volume.protocol) == ("Hospital Q", "t2_tse")
    # cropping in image space keeps the central half of the field of view exactly
    image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    cropped = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(volume.kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(cropped, image[..., 4:13, :], atol=1e-5)  # same image values, same units


def test_ismrmrd_without_acquisitions_names_the_file(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_group("dataset").create_dataset("xml", data=b"<ismrmrdHeader/>")
    with pytest.raises(DatasetError, match="without `dataset/data`") as err:
        read_kspace(tmp_path / "empty.h5")
    assert "empty.h5" in str(err.value)


def test_fastmri_readout_oversampling_is_cropped_to_the_reference(tmp_path: Path) -> None:
    k = _kspace(1, 2, 16, 7)
    with h5py.File(tmp_path / "knee.h5", "w") as f:
        f.create_dataset("kspace", data=k)
        f.create_dataset("reconstruction_rss", data=np.ones((1, 8, 7), np.float32))
    volume = read_kspace(tmp_path / "knee.h5")
    assert volume.kspace.shape == (1, 2, 8, 7) and volume.target is not None
