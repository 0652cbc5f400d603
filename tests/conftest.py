"""Fixtures: tiny synthetic datasets in every layout medlight reads, and paths to the real data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
LABELS = {0: "background", 1: "ball", 2: "box"}


def synthetic_case(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An image with a bright ball (label 1) and a dark box (label 2) at random places, plus noise."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    centre = np.array([rng.uniform(s * 0.3, s * 0.45) for s in shape])
    radius = min(shape) * 0.2
    label[np.linalg.norm(grid - centre, axis=-1) < radius] = 1
    lo = [int(s * 0.6) for s in shape]
    hi = [min(s - 1, lo_ + max(2, int(s * 0.25))) for s, lo_ in zip(shape, lo)]
    label[tuple(slice(a, b) for a, b in zip(lo, hi))] = 2
    image = 100 + 60 * (label == 1) - 40 * (label == 2) + rng.normal(0, 8, shape)
    return image.astype(np.float32), label


def save_nifti(array: np.ndarray, path: Path, spacing: tuple[float, ...] = (1.0, 1.0, 1.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))
    return path


def make_msd(root: Path, n: int = 10, shape: tuple[int, int, int] = (20, 24, 16), seed: int = 0) -> Path:
    """MSD-style dataset: dataset.json + imagesTr/labelsTr, one file per case."""
    rng = np.random.default_rng(seed)
    training = []
    for i in range(n):
        image, label = synthetic_case(shape, rng)
        save_nifti(image, root / "imagesTr" / f"case_{i:03d}.nii.gz")
        save_nifti(label, root / "labelsTr" / f"case_{i:03d}.nii.gz")
        training.append({"image": f"./imagesTr/case_{i:03d}.nii.gz", "label": f"./labelsTr/case_{i:03d}.nii.gz"})
    spec = {
        "name": "synthetic",
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": {str(k): v for k, v in LABELS.items()},
        "numTraining": n,
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(spec, indent=1))
    return root


def make_nnunet_v2(root: Path, n: int = 6, shape: tuple[int, int, int] = (16, 16, 12), channels: int = 2) -> Path:
    """nnU-Net v2 dataset: channel files ``<case>_0000``, ``<case>_0001``; labels as {name: value}."""
    rng = np.random.default_rng(1)
    for i in range(n):
        image, label = synthetic_case(shape, rng)
        for c in range(channels):
            save_nifti(image + c, root / "imagesTr" / f"case_{i:03d}_{c:04d}.nii.gz")
        save_nifti(label, root / "labelsTr" / f"case_{i:03d}.nii.gz")
    spec = {
        "channel_names": {str(c): f"mod{c}" for c in range(channels)},
        "labels": {v: k for k, v in LABELS.items()},
        "numTraining": n,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def make_png(root: Path, n: int = 8, shape: tuple[int, int] = (40, 48), rgb: bool = False) -> Path:
    """2D dataset: images/ and masks/ PNG folders matched by name."""
    rng = np.random.default_rng(2)
    for i in range(n):
        image, label = synthetic_case(shape, rng)
        pixels = np.clip(image, 0, 255).astype(np.uint8)
        if rgb:
            pixels = np.repeat(pixels[..., None], 3, axis=-1)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / "images" / f"img_{i:02d}.png")
        Image.fromarray(label).save(root / "masks" / f"img_{i:02d}.png")
    return root


@pytest.fixture
def msd_dataset(tmp_path: Path) -> Path:
    return make_msd(tmp_path / "msd")


@pytest.fixture(scope="session")
def msd_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-mostly MSD dataset shared by the slower integration tests."""
    return make_msd(tmp_path_factory.mktemp("msd_session") / "msd", n=12, shape=(24, 24, 16))


@pytest.fixture
def dataset_factory(tmp_path: Path) -> Callable[..., Path]:
    makers = {"msd": make_msd, "nnunet_v2": make_nnunet_v2, "png": make_png}
    return lambda kind, **kw: makers[kind](tmp_path / kind, **kw)


@pytest.fixture
def shared_hippocampus() -> Path:
    path = SHARED_DATA / "msd_hippocampus"
    if not path.is_dir():
        pytest.skip("../shared/data/msd_hippocampus is not present (it is not part of a clone)")
    return path


def slurm_cluster_answers() -> bool:
    """``sbatch`` is there and a controller answers ``sinfo`` with a usable node (scripts/slurm/local-cluster.sh)."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return False
    return any(s.rstrip("*") in ("idle", "mixed", "allocated", "completing") for s in states)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
    slurm = [item for item in items if "slurm" in item.keywords]
    if slurm and not slurm_cluster_answers():
        for item in slurm:
            item.add_marker(pytest.mark.skip(reason="no SLURM cluster answers (sudo scripts/slurm/local-cluster.sh)"))
