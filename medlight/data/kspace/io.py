"""Readers for multi-coil k-space files: fastMRI HDF5, ISMRMRD HDF5, BART .cfl/.hdr, CMRxRecon .mat, NumPy.

Every reader returns a :class:`KspaceVolume` with complex64 k-space ``[slices, coils, H, W]`` whose last axis
(W) is the phase-encoding direction that masks undersample:

* HDF5 (``.h5``/``.hdf5``, fastMRI layout): dataset ``kspace`` ``[slices, coils, H, W]`` (or single-coil
  ``[slices, H, W]``), optional ``reconstruction_rss`` ``[slices, H, W]``; attributes ``center`` and
  ``protocol`` (medlight's simulator writes them) name the acquisition.
* ISMRMRD HDF5 (``.h5``/``.hdf5`` with a ``dataset`` group holding ``xml`` and ``data``, read with the
  ``ismrmrd`` package): every imaging acquisition (noise scans, navigators, phase correction skipped) goes
  to ``[slice, coil, readout, kspace_encode_step_1]`` of the encoded matrix; repeated lines (averages,
  repetitions) are averaged; readout oversampling is removed by cropping in image space to the header's
  reconstruction field of view (``encodedSpace.fieldOfView_mm.x`` -> ``reconSpace.fieldOfView_mm.x``), as
  ISMRMRD's reconstruction examples do. Center: the header's ``acquisitionSystemInformation.institutionName``
  or ``stationName``; protocol: ``measurementInformation.protocolName``.
* BART (``.cfl`` with its ``.hdr``): BART's dimension order ``[readout, phase1, phase2, coils, ...]``
  (column-major complex64, see :func:`read_cfl` / :func:`write_cfl`); readout -> H, phase1 -> W, and every
  other dimension (partitions after an inverse FFT along phase2, maps, echoes, time, slices, ...) -> slices.
* MATLAB v7.3 (``.mat``, CMRxRecon layout): a variable whose name starts with ``kspace`` (e.g.
  ``kspace_full``), stored by MATLAB as ``[kx, ky, coils, slices(, frames)]`` with ``real``/``imag`` fields.
  h5py sees the axes reversed; slices and frames become slices, and ky (phase encoding) becomes W.
  Center: the nearest folder named ``Center...``; protocol: the file name (``cine_sax``).
* NumPy (``.npy``): a complex array ``[slices, coils, H, W]`` or ``[coils, H, W]``.

H and W may be any size, odd or non-square; W must be the phase-encoding direction. For fastMRI files whose
``reconstruction_rss`` is smaller along the readout than the k-space (readout oversampling, e.g. 640 vs 320),
the k-space is cropped along the readout in image space to match; a reference that still does not fit is an
error naming the file (a silently replaced reference would hide a corrupt or mismatched file).

A ``dataset.json`` (``{"cases": [{"file", "center", "protocol"}]}``) in the dataset folder overrides the
identifiers. Anything wrong with a file raises :class:`medlight.errors.DatasetError` naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from medlight.errors import DatasetError
from medlight.ops.kspace import crop_readout

KSPACE_ENDINGS = (".h5", ".hdf5", ".mat", ".npy", ".cfl")
UNKNOWN = "unknown"


@dataclass
class KspaceVolume:
    """One acquisition.

    Attributes:
        path: the file.
        kspace: complex64 ``[slices, coils, H, W]``.
        center: acquisition site / scanner identifier.
        protocol: sequence identifier.
        target: stored reference magnitude ``[slices, H, W]`` (e.g. fastMRI ``reconstruction_rss``) or None.
    """

    path: Path
    kspace: np.ndarray
    center: str = UNKNOWN
    protocol: str = UNKNOWN
    target: np.ndarray | None = None


def read_kspace(path: str | Path) -> KspaceVolume:
    """Read a k-space file of any supported kind (chosen by its ending), fully, and check it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: k-space file not found")
    ending = path.suffix.lower()
    if ending not in KSPACE_ENDINGS:
        raise DatasetError(f"{path}: not a k-space file (expected one of {', '.join(KSPACE_ENDINGS)})")
    if ending == ".npy":
        volume = _read_npy(path)
    elif ending == ".mat":
        volume = _read_mat(path)
    elif ending == ".cfl":
        volume = _read_bart(path)
    elif _is_ismrmrd(path):
        volume = _read_ismrmrd(path)
    else:
        volume = _read_h5(path)
    _check(volume)
    return volume


def _read_npy(path: Path) -> KspaceVolume:
    try:  # memory-mapped first: a header claiming more data than the file holds fails before allocating
        array = np.array(np.load(path, mmap_mode="r", allow_pickle=False))
    except Exception as err:  # NumPy raises ValueError/OSError/EOFError for broken files
        raise DatasetError(f"{path}: cannot be read as .npy ({type(err).__name__}: {err})") from err
    if array.ndim == 3:
        array = array[None]
    return KspaceVolume(path, _as_complex(array, path, "array"))


def _read_h5(path: Path) -> KspaceVolume:
    try:
        with h5py.File(path, "r") as f:
            if "kspace" not in f:
                raise DatasetError(
                    f"{path}: no `kspace` dataset (fastMRI) nor `dataset/xml` + `dataset/data` (ISMRMRD); has "
                    f"{sorted(f.keys())}"
                )
            kspace = _as_complex(_read_dataset(f, "kspace", path), path, "kspace")
            if kspace.ndim == 3:  # single-coil fastMRI: [slices, H, W]
                kspace = kspace[:, None]
            rss_ = _read_dataset(f, "reconstruction_rss", path) if "reconstruction_rss" in f else None
            target = _real(rss_, path, "reconstruction_rss") if rss_ is not None else None
            center, protocol = (_attr(f.attrs.get(k)) for k in ("center", "protocol"))
    except OSError as err:
        raise DatasetError(f"{path}: cannot be read as HDF5 ({err})") from err
    if target is not None and target.ndim == 3 and kspace.ndim == 4 and target.shape[1] < kspace.shape[2]:
        kspace = crop_readout(kspace, target.shape[1], axis=-2)  # readout oversampling (fastMRI: 640 -> 320)
    return KspaceVolume(path, kspace, center, protocol, target)


# -- ISMRMRD ------------------------------------------------------------------------------------------------
def _is_ismrmrd(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return "kspace" not in f and isinstance(f.get("dataset"), h5py.Group)
    except OSError:
        return False


SKIPPED_FLAGS = ("ACQ_IS_NOISE_MEASUREMENT", "ACQ_IS_NAVIGATION_DATA", "ACQ_IS_PHASECORR_DATA", "ACQ_IS_DUMMYSCAN_DATA")


def _read_ismrmrd(path: Path) -> KspaceVolume:
    import ismrmrd  # only needed for these files

    with h5py.File(path, "r") as f:
        missing = [k for k in ("xml", "data") if k not in f["dataset"]]
    if missing:
        raise DatasetError(f"{path}: ISMRMRD file without `dataset/{missing[0]}` (header or acquisitions)")
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    try:
        try:
            header = ismrmrd.xsd.CreateFromDocument(dset.read_xml_header())
            encoding = header.encoding[0]
            n_readout, n_lines = encoding.encodedSpace.matrixSize.x, encoding.encodedSpace.matrixSize.y
            fov_ratio = encoding.reconSpace.fieldOfView_mm.x / encoding.encodedSpace.fieldOfView_mm.x
        except Exception as err:  # a broken or incomplete XML header
            raise DatasetError(f"{path}: ISMRMRD header lacks the encoding matrix or field of view ({err})") from err
        skip = sum(1 << (getattr(ismrmrd, flag) - 1) for flag in SKIPPED_FLAGS)
        lines: dict[tuple[int, int], list[np.ndarray]] = {}
        for i in range(dset.number_of_acquisitions()):
            acq = dset.read_acquisition(i)
            if acq.flags & skip:
                continue
            data = np.asarray(acq.data)
            if data.shape[-1] != n_readout:  # e.g. asymmetric echo: place it at its centre sample
                full = np.zeros((data.shape[0], n_readout), np.complex64)
                start = n_readout // 2 - acq.center_sample
                full[:, start : start + data.shape[-1]] = data
                data = full
            lines.setdefault((acq.idx.slice, acq.idx.kspace_encode_step_1), []).append(data)
    finally:
        dset.close()
    if not lines:
        raise DatasetError(f"{path}: ISMRMRD file holds no imaging acquisitions")
    coils = {d.shape[0] for v in lines.values() for d in v}
    if len(coils) != 1:
        raise DatasetError(f"{path}: acquisitions with different channel counts {sorted(coils)}")
    slices = 1 + max(s for s, _ in lines)
    n_lines = max(n_lines, 1 + max(k for _, k in lines))
    kspace = np.zeros((slices, coils.pop(), n_readout, n_lines), np.complex64)
    for (s, k), values in lines.items():
        kspace[s, :, :, k] = np.mean(values, axis=0)
    kspace = crop_readout(kspace, round(n_readout * fov_ratio), axis=-2)
    system, measurement = header.acquisitionSystemInformation, header.measurementInformation
    center = (system and (system.institutionName or system.stationName)) or UNKNOWN
    protocol = (measurement and measurement.protocolName) or path.stem
    return KspaceVolume(path, kspace, str(center), str(protocol))


# -- BART -----------------------------------------------------------------------------------------------
def read_cfl(path: str | Path) -> np.ndarray:
    """A BART array from ``name.cfl`` + ``name.hdr`` (dimensions on the header's second line, column-major)."""
    path = Path(path).with_suffix(".cfl")
    hdr = path.with_suffix(".hdr")
    if not hdr.is_file():
        raise DatasetError(f"{path}: BART header {hdr.name} not found next to it")
    text = [line for line in hdr.read_text().splitlines() if line.strip() and not line.startswith("#")]
    try:
        dims = [int(d) for d in text[0].split()]
    except (IndexError, ValueError) as err:
        raise DatasetError(f"{hdr}: no dimensions line (expected '# Dimensions' then integers)") from err
    data = np.fromfile(path, dtype=np.complex64)
    if data.size != int(np.prod(dims)):
        raise DatasetError(
            f"{path}: holds {data.size} complex values, its header's dimensions {dims} need {np.prod(dims)}"
        )
    return data.reshape(dims, order="F")


def write_cfl(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as BART ``name.cfl`` + ``name.hdr`` (complex64, column-major)."""
    path = Path(path).with_suffix(".cfl")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(str(d) for d in array.shape) + "\n")
    np.asarray(array, dtype=np.complex64).ravel(order="F").tofile(path)
    return path


def _read_bart(path: Path) -> KspaceVolume:
    array = read_cfl(path)
    if array.ndim < 4:
        raise DatasetError(
            f"{path}: BART k-space has dimensions {array.shape}; expected [readout, phase1, phase2, coils, ...]"
        )
    if array.shape[2] > 1:  # 3D: partitions along phase2 become slices of 2D k-space
        array = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(array, axes=2), axis=2, norm="ortho"), axes=2)
    # [x, y, z, coils, rest...] -> [z * rest, coils, x, y], column-major like BART
    moved = np.moveaxis(array, (0, 1, 3), (-2, -1, -3))
    kspace = moved.reshape(-1, *moved.shape[-3:], order="F")
    center = next((p.name for p in path.parents if p.name.lower().startswith("center")), UNKNOWN)
    return KspaceVolume(path, np.ascontiguousarray(kspace, dtype=np.complex64), center, path.stem)


def _read_mat(path: Path) -> KspaceVolume:
    if not h5py.is_hdf5(path):
        raise DatasetError(f"{path}: not a MATLAB v7.3 (HDF5-based) file; re-save it in MATLAB with `-v7.3`")
    try:
        with h5py.File(path, "r") as f:
            keys = sorted(k for k in f if k.lower().startswith("kspace"))
            if not keys:
                raise DatasetError(f"{path}: no variable named kspace* (has {sorted(f.keys())})")
            key = "kspace_full" if "kspace_full" in keys else keys[0]
            raw = _as_complex(_read_dataset(f, key, path), path, key)
    except OSError as err:
        raise DatasetError(f"{path}: cannot be read as MATLAB v7.3 ({err})") from err
    if raw.ndim not in (3, 4, 5):
        raise DatasetError(f"{path}: `{key}` has {raw.ndim} dimensions; expected [kx, ky, coils(, slices, frames)]")
    # h5py order: (frames, slices, coils, ky, kx) -> [frames*slices, coils, kx, ky]
    coils, ky, kx = raw.shape[-3:]
    kspace = raw.reshape(-1, coils, ky, kx).transpose(0, 1, 3, 2)
    center = next((p.name for p in path.parents if p.name.lower().startswith("center")), UNKNOWN)
    return KspaceVolume(path, np.ascontiguousarray(kspace), center, path.stem)


# compressed HDF5 chunks cannot hold data more than ~1000 times their stored size
MAX_COMPRESSION_RATIO = 1100


def _read_dataset(f: h5py.File, name: str, path: Path) -> np.ndarray:
    """The array stored as ``name``: a dataset (not a group) whose stored bytes can hold its shape.

    The size check comes before the read, so a header claiming gigabytes in a small file allocates nothing.
    """
    node = f[name]
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(f"{path}: `{name}` is an HDF5 {type(node).__name__}, not an array dataset")
    claimed, stored = node.size * node.dtype.itemsize, node.id.get_storage_size()
    limit = stored * (MAX_COMPRESSION_RATIO if node.compression else 1)
    if claimed > max(limit, 1) or (claimed and not stored):
        raise DatasetError(
            f"{path}: `{name}` claims shape {node.shape} ({claimed} bytes) but stores {stored} bytes: truncated "
            "or unwritten dataset"
        )
    try:
        return node[()]
    except (OSError, TypeError, ValueError) as err:
        raise DatasetError(f"{path}: `{name}` cannot be read ({type(err).__name__}: {err})") from err


def _real(array: np.ndarray, path: Path, name: str) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise DatasetError(f"{path}: `{name}` is {array.dtype}; expected real values")
    return array.astype(np.float32)


def _as_complex(array: np.ndarray, path: Path, name: str) -> np.ndarray:
    """Complex64 from a complex array or a MATLAB-style compound (real, imag) array."""
    if array.dtype.names and {"real", "imag"} <= set(array.dtype.names):
        array = array["real"] + 1j * array["imag"]
    if not np.iscomplexobj(array):
        raise DatasetError(f"{path}: `{name}` is {array.dtype}, not complex k-space")
    if array.ndim not in (3, 4, 5):
        raise DatasetError(f"{path}: `{name}` has shape {array.shape}; expected [slices, coils, H, W]")
    return array.astype(np.complex64)


def _attr(value: object) -> str:
    if value is None:
        return UNKNOWN
    return value.decode() if isinstance(value, bytes) else str(value)


def _check(volume: KspaceVolume) -> None:
    k = volume.kspace
    if k.ndim != 4 or min(k.shape) == 0:
        raise DatasetError(f"{volume.path}: k-space has shape {k.shape}; expected [slices, coils, H, W]")
    if not np.isfinite(k).all():
        raise DatasetError(f"{volume.path}: k-space holds {int((~np.isfinite(k)).sum())} NaN/Inf value(s)")
    if not np.abs(k).any():
        raise DatasetError(f"{volume.path}: k-space is all zeros")
    if volume.target is not None and volume.target.shape != (k.shape[0], *k.shape[2:]):
        raise DatasetError(
            f"{volume.path}: reconstruction_rss has shape {volume.target.shape}, k-space {k.shape}: they must "
            "agree in slices, H and W"
        )


def discover_kspace(root: str | Path) -> list[dict[str, str]]:
    """Cases of a k-space dataset folder: ``[{"case_id", "file", "center", "protocol"}]``.

    With ``dataset.json`` the listed files (and their identifiers); otherwise every k-space file below
    ``root`` with the identifiers stored in the files.
    """
    root = Path(os.path.normpath(root))
    if not root.is_dir():
        raise DatasetError(f"{root}: k-space dataset folder not found")
    spec = root / "dataset.json"
    if spec.is_file():
        cases = [_listed_case(root, spec, n, c) for n, c in enumerate(_listed(spec))]
    else:
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in KSPACE_ENDINGS and p.is_file())
        cases = []
        for p in files:
            _keep_inside(root, p, p)
            volume = read_kspace(p)
            cases.append({"file": str(p), "center": volume.center, "protocol": volume.protocol})
    if not cases:
        raise DatasetError(f"{root}: no k-space files ({', '.join(KSPACE_ENDINGS)}) found")
    seen: dict[str, str] = {}
    for case in cases:
        case_id = Path(case["file"]).relative_to(root).with_suffix("").as_posix().replace("/", "_")
        if case_id in seen:
            raise DatasetError(f"{spec if spec.is_file() else root}: case {case_id} is listed more than once")
        seen[case_id] = case["file"]
        case["case_id"] = case_id
    return cases


def _listed(spec: Path) -> list:
    try:
        listed = json.loads(spec.read_text())["cases"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise DatasetError(f"{spec}: needs {{'cases': [{{'file', 'center', 'protocol'}}, ...]}} ({err})") from err
    if not isinstance(listed, list):
        raise DatasetError(f"{spec}: 'cases' must be a list of {{'file', 'center', 'protocol'}} objects")
    return listed


def _listed_case(root: Path, spec: Path, n: int, entry: object) -> dict[str, str]:
    """One dataset.json entry, its file resolved and kept inside the dataset folder."""
    fields = ("file", "center", "protocol")
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), (str, int)) for k in fields):
        raise DatasetError(f"{spec}: case {n} must be an object with 'file', 'center' and 'protocol', got {entry!r}")
    file = Path(os.path.normpath(root / str(entry["file"])))  # `..` removed; symlinks kept for the case id
    _keep_inside(root, file, spec)
    if not file.is_file():
        raise DatasetError(f"{spec}: case {n}: file {entry['file']!r} does not exist")
    return {"file": str(file), "center": str(entry["center"]), "protocol": str(entry["protocol"])}


def _keep_inside(root: Path, path: Path, where: Path) -> None:
    if not path.resolve().is_relative_to(root.resolve()):
        raise DatasetError(f"{where}: path {path} resolves to {path.resolve()}, outside the dataset folder {root}")
