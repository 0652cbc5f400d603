"""Simulated multi-center, multi-protocol multi-coil k-space from real magnitude MRI.

Real multi-center raw data is not available here, so each "center" is a simulated scanner that acquires
real magnitude slices (a protocol = one source of NIfTI volumes, e.g. BraTS FLAIR, BraTS T1c, hippocampus
T1). What a simulated center differs in, and nothing else (see :class:`CenterSpec`):

* **coil count** and **coil geometry**: ``coils`` receive coils evenly spaced on a ring of radius
  ``coil_radius`` (field of view = [-1, 1]^2), each with a Gaussian sensitivity of width ``coil_width`` and a
  phase that grows linearly with its angle and across the field of view; maps are normalised so that
  sum_c |S_c|^2 = 1 (the RSS image is then the object's magnitude);
* **background phase**: a smooth random second-order polynomial phase of amplitude ``phase`` radians,
  drawn per slice;
* **bias field**: a smooth random multiplicative field 1 + ``bias`` * (second-order polynomial), per volume;
* **intensity scale**: all signal multiplied by ``scale``;
* **noise**: complex Gaussian noise in k-space of standard deviation ``noise`` x (mean object magnitude
  x scale), per coil.

The ``realistic`` preset (:func:`realistic_centers`, ``SimulationConfig.preset``) adds what real acquisitions
have and the basic centers lack (each a :class:`CenterSpec` field whose default keeps the basic behaviour):

* ``coil_model: loops``: sensitivities from the Biot-Savart law of ``coils`` circular loop coils of radius
  ``loop_radius`` on a ring of radius ``coil_radius`` around the field of view, facing its centre (the
  receive field B1- = Bx - i By in the slice plane), not normalised: the RSS image shows the coils' shading
  (bright near the coils), as real multi-coil references do; scaled to a mean RSS of 1 in the central disc;
* ``susceptibility``: besides the smooth phase, a localised phase of that amplitude (radians) from a few
  z-dipoles just off the slice plane (the field pattern (3 cos^2 - 1) / r^3 of air-tissue interfaces);
* ``noise_correlation``: noise correlated between coils, covariance (1 - rho) I + rho A A^H / coils (A a
  random complex matrix fixed per center), applied through its Cholesky factor;
* ``matrix``: the center's own (H, W) matrix (readout x phase encoding), non-square, odd allowed; the source
  slice is padded to the matrix's aspect ratio and resampled.

The fully sampled coil k-space goes into fastMRI-style HDF5 files (``kspace``, ``reconstruction_rss``,
attributes ``center``/``protocol``/``source``) with a ``dataset.json``, so the data module reads simulated
and real data through the same readers. Everything is seeded: the same settings give the same files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import h5py
import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from filelock import FileLock

from medlight.errors import DatasetError
from medlight.ops.kspace import fft2c, ifft2c, rss, to_real
from medlight.runs.layout import write_json

log = logging.getLogger(__name__)


@dataclass
class CenterSpec:
    """One simulated site/scanner (see the module docstring for what each field does)."""

    name: str
    coils: int = 4
    coil_radius: float = 1.2
    coil_width: float = 0.7
    phase: float = 0.5
    bias: float = 0.1
    scale: float = 1.0
    noise: float = 0.01
    coil_model: Literal["gaussian", "loops"] = "gaussian"
    loop_radius: float = 0.5
    susceptibility: float = 0.0
    noise_correlation: float = 0.0
    matrix: tuple[int, int] | None = None


@dataclass
class ProtocolSource:
    """Real magnitude volumes acquired as one protocol.

    Attributes:
        name: protocol identifier, e.g. ``flair``.
        root: folder to search; a missing folder skips the protocol with a warning (e.g. no ../shared/data).
        pattern: glob of NIfTI volumes below ``root``.
        slice_axis: axis along which slices are taken.
    """

    name: str
    root: str
    pattern: str
    slice_axis: int = 2


def default_centers() -> list[CenterSpec]:
    """Four centers: three sources for training and ``D`` to hold out (more coils, stronger phase/bias/noise)."""
    return [
        CenterSpec("A", coils=4, coil_radius=1.2, coil_width=0.8, phase=0.3, bias=0.05, scale=1.0, noise=0.01),
        CenterSpec("B", coils=6, coil_radius=1.1, coil_width=0.6, phase=0.8, bias=0.15, scale=3.0, noise=0.02),
        CenterSpec("C", coils=5, coil_radius=1.4, coil_width=1.0, phase=0.5, bias=0.25, scale=0.5, noise=0.015),
        CenterSpec("D", coils=8, coil_radius=1.0, coil_width=0.5, phase=1.5, bias=0.3, scale=10.0, noise=0.03),
    ]


def realistic_centers() -> list[CenterSpec]:
    """Four centers with loop coils, susceptibility phase, correlated noise and their own non-square matrices."""
    loops = {"coil_model": "loops", "bias": 0.05}
    return [
        CenterSpec("A", coils=6, coil_radius=1.5, loop_radius=0.5, phase=0.5, susceptibility=1.0, scale=1.0,
                   noise=0.010, noise_correlation=0.3, matrix=(96, 80), **loops),  # type: ignore[arg-type]
        CenterSpec("B", coils=8, coil_radius=1.6, loop_radius=0.6, phase=1.0, susceptibility=1.5, scale=3.0,
                   noise=0.015, noise_correlation=0.5, matrix=(112, 96), **loops),  # type: ignore[arg-type]
        CenterSpec("C", coils=4, coil_radius=1.4, loop_radius=0.7, phase=0.8, susceptibility=0.5, scale=0.5,
                   noise=0.020, noise_correlation=0.2, matrix=(88, 72), **loops),  # type: ignore[arg-type]
        CenterSpec("D", coils=8, coil_radius=1.3, loop_radius=0.45, phase=2.0, susceptibility=2.5, scale=10.0,
                   noise=0.020, noise_correlation=0.6, matrix=(104, 87), **loops),  # type: ignore[arg-type]
    ]  # fmt: skip


@dataclass
class SimulationConfig:
    """What to simulate.

    Attributes:
        out_dir: folder for the HDF5 files and dataset.json (re-used while the settings are unchanged).
        protocols: magnitude sources (default :func:`default_protocols`); each volume is acquired by one center.
        centers: simulated centers (default :func:`default_centers`).
        volumes_per_center: at most this many volumes of each protocol per center.
        slices_per_volume: slices taken evenly from the central 60% of each volume.
        size: slices are resampled to size x size pixels.
        seed: seed of every random draw.
        fov_margin: share of the field of view left empty on every side of the object (the ``realistic``
            data sets 0.15; 0: the object fills the field of view, as the basic simulator did).
        preset: ``basic`` (:func:`default_centers`) or ``realistic`` (:func:`realistic_centers`) centers when
            ``centers`` is not given.
    """

    out_dir: str = "runs/kspace_sim"
    protocols: list[ProtocolSource] | None = None
    centers: list[CenterSpec] | None = None
    volumes_per_center: int = 8
    slices_per_volume: int = 6
    size: int = 64
    seed: int = 0
    fov_margin: float = 0.0
    preset: Literal["basic", "realistic"] = "basic"

    @property
    def protocol_list(self) -> list[ProtocolSource]:
        """The protocols, by default BraTS FLAIR and T1c (../shared/data) and hippocampus T1 (data/)."""
        return self.protocols if self.protocols is not None else default_protocols()

    @property
    def center_list(self) -> list[CenterSpec]:
        if self.centers is not None:
            return self.centers
        return realistic_centers() if self.preset == "realistic" else default_centers()

    def settings(self) -> dict:
        return {
            **asdict(self),
            "protocols": [asdict(p) for p in self.protocol_list],
            "centers": [asdict(c) for c in self.center_list],
        }

    def digest(self) -> str:
        settings = {k: v for k, v in self.settings().items() if k not in ("out_dir", "preset")}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def default_protocols() -> list[ProtocolSource]:
    return [
        ProtocolSource("flair", "../shared/data/brats2015_subset", "*/*/Flair*.nii.gz"),
        ProtocolSource("t1c", "../shared/data/brats2015_subset", "*/*/T1c*.nii.gz"),
        ProtocolSource("t1", "data/hippocampus", "imagesTr/*.nii.gz"),
    ]


# -- building blocks (unit-tested) ---------------------------------------------------------------------------
Shape = int | tuple[int, int]


def _grid(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres (y, x) of an (H, W) matrix with square pixels; the longer side spans [-1, 1]."""
    h, w = (shape, shape) if isinstance(shape, int) else shape
    side = max(h, w)
    ys = np.linspace(-1, 1, h, dtype=np.float32) * (h - 1) / max(side - 1, 1)
    xs = np.linspace(-1, 1, w, dtype=np.float32) * (w - 1) / max(side - 1, 1)
    return np.meshgrid(ys, xs, indexing="ij")


def loop_coil_maps(coils: int, ring_radius: float, loop_radius: float, shape: Shape, segments: int = 64) -> np.ndarray:
    """Complex (coils, H, W) receive sensitivities B1- = Bx - i By of circular loops by the Biot-Savart law.

    Loop ``c`` is centred at ring_radius (cos a_c, sin a_c, 0) with its axis pointing at the field of view's
    centre (a_c = 2 pi c / coils) and is cut into ``segments`` straight pieces; the field is evaluated in the
    slice plane z = 0 and scaled so that the mean RSS over the central disc (radius 0.5) is 1.
    """
    y, x = _grid(shape)
    points = np.stack([x, y, np.zeros_like(x)], -1).reshape(-1, 1, 3).astype(np.float64)  # (P, 1, 3)
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    maps = []
    for c in range(coils):
        a = 2 * np.pi * c / coils
        centre = ring_radius * np.array([np.cos(a), np.sin(a), 0.0])
        u, v = np.array([-np.sin(a), np.cos(a), 0.0]), np.array([0.0, 0.0, 1.0])  # the loop's plane
        wire = centre + loop_radius * (np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v)  # (S, 3)
        dl = loop_radius * (2 * np.pi / segments) * (-np.sin(phi)[:, None] * u + np.cos(phi)[:, None] * v)
        r = points - wire[None]  # (P, S, 3)
        field = (np.cross(dl[None], r) / np.linalg.norm(r, axis=-1, keepdims=True) ** 3).sum(1)  # (P, 3)
        maps.append((field[:, 0] - 1j * field[:, 1]).reshape(x.shape))
    stacked = np.stack(maps)
    rss_map = np.sqrt((np.abs(stacked) ** 2).sum(0))
    return (stacked / rss_map[(x**2 + y**2) < 0.25].mean()).astype(np.complex64)


def sensitivity_maps(center: CenterSpec, shape: Shape) -> np.ndarray:
    """Complex (coils, H, W) maps: ``loops`` (Biot-Savart, see :func:`loop_coil_maps`) or Gaussian ones with
    sum_c |S_c|^2 = 1 at every pixel."""
    if center.coil_model == "loops":
        return loop_coil_maps(center.coils, center.coil_radius, center.loop_radius, shape)
    y, x = _grid(shape)
    maps = []
    for c in range(center.coils):
        angle = 2 * np.pi * c / center.coils
        cy, cx = center.coil_radius * np.sin(angle), center.coil_radius * np.cos(angle)
        magnitude = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * center.coil_width**2))
        phase = angle + 0.5 * (np.cos(angle) * y - np.sin(angle) * x)
        maps.append(magnitude * np.exp(1j * phase))
    stacked = np.stack(maps)
    return (stacked / np.sqrt((np.abs(stacked) ** 2).sum(0, keepdims=True))).astype(np.complex64)


def smooth_field(size: Shape, rng: np.random.Generator) -> np.ndarray:
    """A random second-order polynomial over [-1, 1]^2, scaled to a maximum magnitude of 1."""
    y, x = _grid(size)
    terms = np.stack([y, x, x * y, x**2 - 1 / 3, y**2 - 1 / 3])
    value = np.tensordot(rng.uniform(-1, 1, len(terms)), terms, axes=1)
    return (value / max(float(np.abs(value).max()), 1e-6)).astype(np.float32)


def susceptibility_phase(shape: Shape, rng: np.random.Generator, sources: int = 3) -> np.ndarray:
    """A localised phase pattern, maximum magnitude 1: the in-plane field (3 cos^2 t - 1) / r^3 of ``sources``
    z-dipoles at random positions a small distance d off the slice plane (cos t = d / r)."""
    y, x = _grid(shape)
    field = np.zeros_like(x, dtype=np.float64)
    for _ in range(sources):
        cy, cx = rng.uniform(-0.6, 0.6, 2)
        d = rng.uniform(0.08, 0.2)
        r2 = (y - cy) ** 2 + (x - cx) ** 2 + d**2
        field += rng.choice([-1.0, 1.0]) * (3 * d**2 / r2 - 1) / r2**1.5
    return (field / max(float(np.abs(field).max()), 1e-12)).astype(np.float32)


def noise_covariance(center: CenterSpec, seed: int = 0) -> np.ndarray:
    """The center's Hermitian positive-definite (coils, coils) noise covariance, mean variance 1:
    (1 - rho) I + rho A A^H / coils with A a random complex matrix fixed by the center's name."""
    rng = np.random.default_rng([zlib.crc32(center.name.encode()), seed])
    n = center.coils
    a = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    cov = (1 - center.noise_correlation) * np.eye(n) + center.noise_correlation * (a @ a.conj().T) / (2 * n)
    return cov / np.real(np.trace(cov)) * n


def acquire(magnitude: np.ndarray, center: CenterSpec, rng: np.random.Generator) -> np.ndarray:
    """Fully sampled coil k-space (slices, coils, H, W) of magnitude slices (slices, H, W) at ``center``."""
    slices, h, w = magnitude.shape
    sens = sensitivity_maps(center, (h, w))
    bias = np.clip(1 + center.bias * smooth_field((h, w), rng), 0.2, None)  # per volume
    phase = np.stack([center.phase * smooth_field((h, w), rng) for _ in range(slices)])  # per slice
    if center.susceptibility:
        phase = phase + center.susceptibility * susceptibility_phase((h, w), rng)  # per volume (anatomy)
    image = center.scale * magnitude * bias * np.exp(1j * phase)
    coil_images = torch.from_numpy((sens[None] * image[:, None]).astype(np.complex64))
    kspace = torch.view_as_complex(fft2c(torch.view_as_real(coil_images))).numpy()
    sigma = center.noise * center.scale * float(magnitude.mean())
    white = rng.standard_normal((2, *kspace.shape)).astype(np.float32) * sigma / np.sqrt(2)
    noise = white[0] + 1j * white[1]
    if center.noise_correlation:
        noise = np.einsum("ij,sjhw->sihw", np.linalg.cholesky(noise_covariance(center)), noise)
    return (kspace + noise).astype(np.complex64)


def load_slices(path: Path, slice_axis: int, count: int, size: Shape, margin: float = 0.0) -> np.ndarray:
    """``count`` magnitude slices (count, H, W) in [0, ~1] from the central 60% of a NIfTI volume, padded to
    the aspect ratio of ``size`` (an int: square) and resampled; ``margin`` of the field of view on every side
    is left empty (air around the object, as in a real field of view; ESPIRiT needs it)."""
    try:
        volume = np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))  # type: ignore[attr-defined]
    except Exception as err:  # nibabel raises many types for broken files
        raise DatasetError(f"{path}: cannot be read as NIfTI ({type(err).__name__}: {err})") from err
    if volume.ndim != 3 or not np.isfinite(volume).all():
        raise DatasetError(f"{path}: needs a finite 3D magnitude volume, got shape {volume.shape}")
    volume = np.moveaxis(volume - volume.min(), slice_axis, 0)  # background (the minimum) -> 0
    volume = volume / max(float(np.percentile(volume, 99.5)), 1e-6)
    n = volume.shape[0]
    picks = np.linspace(0.2 * (n - 1), 0.8 * (n - 1), count).round().astype(int)
    chosen = torch.from_numpy(np.clip(volume[picks], 0, 1.5))
    full = (size, size) if isinstance(size, int) else size
    h, w = (round(n * (1 - 2 * margin)) for n in full)
    rows, cols = chosen.shape[1:]  # pad to the matrix's aspect ratio (square pixels), then resample
    rows, cols = max(rows, round(cols * h / w)), max(cols, round(rows * w / h))
    pad = [(cols - chosen.shape[2]) // 2, (cols - chosen.shape[2] + 1) // 2]
    pad += [(rows - chosen.shape[1]) // 2, (rows - chosen.shape[1] + 1) // 2]
    framed = F.pad(chosen[:, None], pad)
    inner = F.interpolate(framed, size=(h, w), mode="bilinear", antialias=True, align_corners=False)[:, 0]
    pad = [(full[1] - w) // 2, (full[1] - w + 1) // 2, (full[0] - h) // 2, (full[0] - h + 1) // 2]
    return F.pad(inner, pad).numpy()


# -- the dataset ------------------------------------------------------------------------------------------
def assign_volumes(config: SimulationConfig, repo_root: Path) -> list[tuple[CenterSpec, ProtocolSource, Path]]:
    """Which center acquires which volume: per protocol, a seeded shuffle dealt round-robin to the centers."""
    plan = []
    for protocol in config.protocol_list:
        root = Path(protocol.root)
        root = root if root.is_absolute() else repo_root / root
        files = sorted(root.glob(protocol.pattern)) if root.is_dir() else []
        if not files:
            log.warning("simulator: protocol %r skipped, no %s under %s", protocol.name, protocol.pattern, root)
            continue
        random.Random(f"{config.seed}-{protocol.name}").shuffle(files)
        per_center: dict[str, int] = {}
        for i, path in enumerate(files):
            center = config.center_list[i % len(config.center_list)]
            if per_center.get(center.name, 0) < config.volumes_per_center:
                per_center[center.name] = per_center.get(center.name, 0) + 1
                plan.append((center, protocol, path))
    if not plan:
        raise DatasetError(f"simulator: no source volumes found for any protocol ({config.protocol_list})")
    return plan


def simulate(config: SimulationConfig, repo_root: Path | None = None) -> Path:
    """Write the simulated dataset to ``config.out_dir`` (skipped if it already holds these settings)."""
    repo_root = repo_root or Path.cwd()
    out = Path(config.out_dir)
    out = out if out.is_absolute() else repo_root / out
    spec_file = out / "dataset.json"
    out.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out / ".simulation.lock")):  # runs of a SLURM array may start together
        if not (spec_file.is_file() and json.loads(spec_file.read_text()).get("simulation") == config.digest()):
            _simulate(config, repo_root, out)
    return out


def _simulate(config: SimulationConfig, repo_root: Path, out: Path) -> None:
    spec_file = out / "dataset.json"
    spec_file.unlink(missing_ok=True)
    shutil.rmtree(out / "splits", ignore_errors=True)  # split files of other settings would not match
    cases = []
    for i, (center, protocol, source) in enumerate(assign_volumes(config, repo_root)):
        rng = np.random.default_rng([config.seed, i])
        shape = tuple(center.matrix) if center.matrix else config.size
        magnitude = load_slices(source, protocol.slice_axis, config.slices_per_volume, shape, config.fov_margin)  # type: ignore[arg-type]
        kspace = acquire(magnitude, center, rng)
        name = f"{center.name}_{protocol.name}_{i:03d}.h5"
        _write(out / name, kspace, center.name, protocol.name, source.name)
        cases.append({"file": name, "center": center.name, "protocol": protocol.name, "source": source.name})
    # written last, atomically: a half-written folder is simulated again
    write_json(spec_file, {"simulation": config.digest(), "settings": config.settings(), "cases": cases})
    log.info("simulator: %d volumes written to %s", len(cases), out)


def _write(path: Path, kspace: np.ndarray, center: str, protocol: str, source: str) -> None:
    target = rss(ifft2c(to_real(kspace))).numpy().astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_rss", data=target)
        f.attrs.update({"center": center, "protocol": protocol, "source": source, "max": float(target.max())})
