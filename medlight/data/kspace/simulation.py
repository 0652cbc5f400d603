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
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from filelock import FileLock

from medlight.errors import DatasetError
from medlight.ops.kspace import fft2c, ifft2c, rss, to_real

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
    """

    out_dir: str = "runs/kspace_sim"
    protocols: list[ProtocolSource] | None = None
    centers: list[CenterSpec] | None = None
    volumes_per_center: int = 8
    slices_per_volume: int = 6
    size: int = 64
    seed: int = 0

    @property
    def protocol_list(self) -> list[ProtocolSource]:
        """The protocols, by default BraTS FLAIR and T1c (../shared/data) and hippocampus T1 (data/)."""
        return self.protocols if self.protocols is not None else default_protocols()

    @property
    def center_list(self) -> list[CenterSpec]:
        return self.centers if self.centers is not None else default_centers()

    def settings(self) -> dict:
        return {
            **asdict(self),
            "protocols": [asdict(p) for p in self.protocol_list],
            "centers": [asdict(c) for c in self.center_list],
        }

    def digest(self) -> str:
        settings = {k: v for k, v in self.settings().items() if k != "out_dir"}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def default_protocols() -> list[ProtocolSource]:
    return [
        ProtocolSource("flair", "../shared/data/brats2015_subset", "*/*/Flair*.nii.gz"),
        ProtocolSource("t1c", "../shared/data/brats2015_subset", "*/*/T1c*.nii.gz"),
        ProtocolSource("t1", "data/hippocampus", "imagesTr/*.nii.gz"),
    ]


# -- building blocks (unit-tested) ---------------------------------------------------------------------------
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(-1, 1, size, dtype=np.float32)
    return np.meshgrid(axis, axis, indexing="ij")


def sensitivity_maps(center: CenterSpec, size: int) -> np.ndarray:
    """Complex (coils, size, size) maps with sum_c |S_c|^2 = 1 at every pixel."""
    y, x = _grid(size)
    maps = []
    for c in range(center.coils):
        angle = 2 * np.pi * c / center.coils
        cy, cx = center.coil_radius * np.sin(angle), center.coil_radius * np.cos(angle)
        magnitude = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * center.coil_width**2))
        phase = angle + 0.5 * (np.cos(angle) * y - np.sin(angle) * x)
        maps.append(magnitude * np.exp(1j * phase))
    stacked = np.stack(maps)
    return (stacked / np.sqrt((np.abs(stacked) ** 2).sum(0, keepdims=True))).astype(np.complex64)


def smooth_field(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random second-order polynomial over [-1, 1]^2, scaled to a maximum magnitude of 1."""
    y, x = _grid(size)
    terms = np.stack([y, x, x * y, x**2 - 1 / 3, y**2 - 1 / 3])
    value = np.tensordot(rng.uniform(-1, 1, len(terms)), terms, axes=1)
    return (value / max(float(np.abs(value).max()), 1e-6)).astype(np.float32)


def acquire(magnitude: np.ndarray, center: CenterSpec, rng: np.random.Generator) -> np.ndarray:
    """Fully sampled coil k-space (slices, coils, H, W) of magnitude slices (slices, H, W) at ``center``."""
    slices, size, _ = magnitude.shape
    sens = sensitivity_maps(center, size)
    bias = np.clip(1 + center.bias * smooth_field(size, rng), 0.2, None)  # per volume
    phase = np.stack([center.phase * smooth_field(size, rng) for _ in range(slices)])  # per slice
    image = center.scale * magnitude * bias * np.exp(1j * phase)
    coil_images = torch.from_numpy((sens[None] * image[:, None]).astype(np.complex64))
    kspace = torch.view_as_complex(fft2c(torch.view_as_real(coil_images))).numpy()
    sigma = center.noise * center.scale * float(magnitude.mean())
    noise = rng.standard_normal((2, *kspace.shape)).astype(np.float32) * sigma / np.sqrt(2)
    return (kspace + noise[0] + 1j * noise[1]).astype(np.complex64)


def load_slices(path: Path, slice_axis: int, count: int, size: int) -> np.ndarray:
    """``count`` magnitude slices (count, size, size) in [0, ~1] from the central 60% of a NIfTI volume."""
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
    side = max(chosen.shape[1:])  # pad to a square field of view, then resample
    pad = [(side - chosen.shape[2]) // 2, (side - chosen.shape[2] + 1) // 2]
    pad += [(side - chosen.shape[1]) // 2, (side - chosen.shape[1] + 1) // 2]
    square = F.pad(chosen[:, None], pad)
    return F.interpolate(square, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[:, 0].numpy()


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
        magnitude = load_slices(source, protocol.slice_axis, config.slices_per_volume, config.size)
        kspace = acquire(magnitude, center, rng)
        name = f"{center.name}_{protocol.name}_{i:03d}.h5"
        _write(out / name, kspace, center.name, protocol.name, source.name)
        cases.append({"file": name, "center": center.name, "protocol": protocol.name, "source": source.name})
    tmp = spec_file.with_name(".dataset.json.tmp")
    tmp.write_text(json.dumps({"simulation": config.digest(), "settings": config.settings(), "cases": cases}, indent=1))
    tmp.replace(spec_file)  # written last: a half-written folder is simulated again
    log.info("simulator: %d volumes written to %s", len(cases), out)


def _write(path: Path, kspace: np.ndarray, center: str, protocol: str, source: str) -> None:
    target = rss(ifft2c(to_real(kspace))).numpy().astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_rss", data=target)
        f.attrs.update({"center": center, "protocol": protocol, "source": source, "max": float(target.max())})
