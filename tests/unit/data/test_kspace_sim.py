"""The k-space simulator and the k-space data module, on a tiny simulation from synthetic NIfTI volumes."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medlight.data.kspace.datamodule import KspaceDataModule
from medlight.data.kspace.simulation import (
    CenterSpec,
    ProtocolSource,
    SimulationConfig,
    acquire,
    sensitivity_maps,
    simulate,
)
from medlight.errors import ConfigError
from medlight.ops.kspace import ifft2c, rss, to_real
from tests.conftest import save_nifti

CENTERS = [CenterSpec("A", coils=2, noise=0.0), CenterSpec("B", coils=3, scale=5.0, noise=0.05)]


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(6):
        save_nifti(rng.uniform(0, 100, (12, 10, 8)).astype(np.float32), tmp_path / "src" / f"v{i}.nii.gz")
    return tmp_path / "src"


def _config(tmp_path: Path, sources: Path, **kw: object) -> SimulationConfig:
    protocols = [ProtocolSource("t1", str(sources), "*.nii.gz"), ProtocolSource("absent", "/nonexistent", "*.nii")]
    settings = {"volumes_per_center": 3, "slices_per_volume": 2, "size": 32, **kw}
    return SimulationConfig(str(tmp_path / "sim"), protocols, CENTERS, **settings)  # type: ignore[arg-type]


def test_sensitivity_maps_are_normalised() -> None:
    maps = sensitivity_maps(CenterSpec("X", coils=5), 16)
    assert maps.shape == (5, 16, 16)
    np.testing.assert_allclose((np.abs(maps) ** 2).sum(0), 1.0, rtol=1e-5)


def test_noiseless_acquisition_keeps_the_magnitude_times_bias_and_scale() -> None:
    magnitude = np.random.default_rng(1).uniform(0.5, 1, (2, 16, 16)).astype(np.float32)
    center = CenterSpec("X", coils=3, bias=0.0, scale=2.0, noise=0.0)
    kspace = acquire(magnitude, center, np.random.default_rng(0))
    assert kspace.shape == (2, 3, 16, 16) and kspace.dtype == np.complex64
    np.testing.assert_allclose(rss(ifft2c(to_real(kspace))).numpy(), 2.0 * magnitude, rtol=1e-4, atol=1e-5)


def test_simulation_writes_centers_and_is_reused(tmp_path: Path, sources: Path) -> None:
    out = simulate(_config(tmp_path, sources))
    spec = json.loads((out / "dataset.json").read_text())
    assert {(c["center"], c["protocol"]) for c in spec["cases"]} == {("A", "t1"), ("B", "t1")}
    assert len(spec["cases"]) == 6  # the absent protocol was skipped
    stamp = (out / spec["cases"][0]["file"]).stat().st_mtime_ns
    simulate(_config(tmp_path, sources))
    assert (out / spec["cases"][0]["file"]).stat().st_mtime_ns == stamp


def test_datamodule_items_masks_and_center_selection(tmp_path: Path, sources: Path) -> None:
    dm = KspaceDataModule(
        simulation=_config(tmp_path, sources),
        num_folds=2,
        test_fraction=0.3,
        train_centers=["A"],
        test_centers=["B"],
        acceleration=4,
        center_fraction=0.125,
    )
    dm.setup("fit")
    assert {c["center"] for c in dm.parts["train"] + dm.parts["val"]} == {"A"}
    assert {c["center"] for c in dm.parts["test"]} == {"B"}
    batch = next(iter(dm.train_dataloader()))
    assert batch["masked"].shape == (1, 2, 32, 32, 2) and batch["center"] == ["A"]
    cols = batch["mask"].reshape(-1)
    assert batch["masked"][..., ~cols, :].abs().sum() == 0 and 0.2 < cols.float().mean() < 0.35
    first, again = next(iter(dm.test_dataloader())), next(iter(dm.test_dataloader()))
    assert first["masked"].shape == (1, 2, 3, 32, 32, 2)  # one volume: 2 slices, 3 coils
    assert torch.equal(first["mask"], again["mask"])  # fixed per volume
    assert dm.case_meta[int(first["case_index"])]["center"] == "B"


def test_unknown_center_is_refused(tmp_path: Path, sources: Path) -> None:
    dm = KspaceDataModule(simulation=_config(tmp_path, sources), num_folds=2, test_centers=["Q"])
    with pytest.raises(ConfigError, match="Q"):
        dm.setup("fit")


def test_an_impossible_mask_is_refused_when_the_data_module_is_made() -> None:
    from medlight.data import KspaceDataModule
    from medlight.errors import ConfigError

    with pytest.raises(ConfigError, match="acceleration=8, center_fraction=0.375"):
        KspaceDataModule(dataset="anywhere", acceleration=8, center_fraction=0.375)  # 24 centre lines of 64


# -- the realistic simulator ---------------------------------------------------------------------------
def test_loop_coil_maps_are_physical_and_non_square() -> None:
    from medlight.data.kspace.simulation import loop_coil_maps

    maps = loop_coil_maps(8, 1.4, 0.5, (40, 33))
    assert maps.shape == (8, 40, 33) and maps.dtype == np.complex64
    rss_map = np.sqrt((np.abs(maps) ** 2).sum(0))
    assert rss_map.max() > 1.5 * rss_map[20, 16]  # brighter near the coils than in the centre
    first = np.abs(maps[0])  # coil 0 sits at +x: stronger at the right edge than at the left
    assert first[:, -1].mean() > 3 * first[:, 0].mean()
    assert np.ptp(np.angle(maps[0][first > first.max() / 10])) > 0.5  # a spatially varying phase


def test_noise_correlated_between_coils_has_the_center_covariance() -> None:
    from medlight.data.kspace.simulation import noise_covariance

    center = CenterSpec("Z", coils=4, noise=0.1, noise_correlation=0.6, bias=0.0)
    cov = noise_covariance(center)
    np.testing.assert_allclose(cov, cov.conj().T, atol=1e-12)  # Hermitian
    assert np.linalg.eigvalsh(cov).min() > 0 and abs(np.trace(cov).real - 4) < 1e-9
    image = np.ones((40, 32, 32), np.float32)  # mean magnitude 1: noise standard deviation 0.1
    noisy = acquire(image, center, np.random.default_rng(0))
    clean = acquire(image, dataclasses.replace(center, noise=0.0), np.random.default_rng(0))  # same other draws
    noise = (noisy - clean).transpose(1, 0, 2, 3).reshape(4, -1)
    empirical = noise @ noise.conj().T / noise.shape[1] / 0.1**2
    np.testing.assert_allclose(empirical, cov, atol=0.05)


def test_realistic_simulation_has_complex_phase_and_center_matrices(tmp_path: Path, sources: Path) -> None:
    from medlight.data.kspace.simulation import realistic_centers, susceptibility_phase

    centers = [CenterSpec(**{**c.__dict__, "coils": 3}) for c in realistic_centers()[:2]]
    config = SimulationConfig(str(tmp_path / "real"), [ProtocolSource("t1", str(sources), "*.nii.gz")], centers,
                              volumes_per_center=1, slices_per_volume=2, fov_margin=0.15)  # fmt: skip
    out = simulate(config)
    spec = json.loads((out / "dataset.json").read_text())
    import h5py

    for case, center in zip(spec["cases"], centers):
        with h5py.File(out / case["file"]) as f:
            assert f["kspace"].shape == (2, 3, *center.matrix)  # the center's own non-square matrix
    phase = susceptibility_phase((32, 27), np.random.default_rng(0))
    assert phase.shape == (32, 27) and np.abs(phase).max() == pytest.approx(1.0)
    assert (np.abs(phase) > 0.5).mean() < 0.05  # localised
