"""The planning rules on hand-made fingerprints (no files, no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medlight.planning import rules
from medlight.planning.fingerprint import CaseFacts, Fingerprint
from medlight.planning.segmentation import build_network, network_args


def make_fp(spacings, shapes, channels=("MRI",), dims=3, eight_bit=False, labels=None) -> Fingerprint:
    cases = [
        CaseFacts(f"c{i}", tuple(sp), tuple(sh), len(channels), {0: 1000, 1: 100}, eight_bit)
        for i, (sp, sh) in enumerate(zip(spacings, shapes))
    ]
    intensity = [{"p00_5": -100.0, "p99_5": 300.0, "mean": 50.0, "std": 40.0}] * len(channels)
    return Fingerprint(Path("x"), dims, list(channels), cases, intensity, labels or {0: "bg", 1: "fg"}, True)


def test_isotropic_target_spacing_is_the_median_and_3d_only() -> None:
    fp = make_fp([(1, 1, 1), (1.2, 1.2, 1.2), (0.8, 0.8, 0.8)], [(100, 100, 100)] * 3)
    assert rules.target_spacing(fp).value == [1.0, 1.0, 1.0]
    assert [g.mode for g in rules.geometries(fp)] == ["3d"]


def test_anisotropic_low_resolution_axis_takes_the_10th_percentile_and_both_configurations() -> None:
    spacings = [(0.8, 0.8, z) for z in (2.0, 5.0, 5.0, 5.0, 6.0)]
    fp = make_fp(spacings, [(200, 200, 40)] * 5)
    target = rules.target_spacing(fp).value
    assert target[:2] == [0.8, 0.8] and target[2] == round(float(np.percentile([2, 5, 5, 5, 6], 10)), 4)
    modes = [g.mode for g in rules.geometries(fp)]
    assert modes == ["3d", "2d_slices"]
    assert rules.geometries(fp)[1].slice_axis == 2


def test_topology_waits_with_the_coarse_axis_and_keeps_feature_maps_at_least_4() -> None:
    kernels, strides = rules.topology([160.0, 160.0, 20.0], [0.8, 0.8, 4.0])
    assert kernels[0] == [3, 3, 1] and strides[0] == [1, 1, 1]
    assert strides[1] == [2, 2, 1]  # z (4 mm) waits until x, y reach 1.6 / 3.2 mm
    assert any(s[2] == 2 for s in strides)
    size = np.array([160, 160, 20]) / np.prod(np.array(strides), axis=0)
    assert size.min() >= rules.MIN_FEATURE_MAP
    assert len(strides) - 1 <= rules.MAX_POOLS[3]


@pytest.mark.parametrize("accelerator", ["cpu", "gpu"], ids=["cpu_layout", "dynunet_layout"])
def test_planned_networks_keep_full_resolution_on_an_anisotropic_patch(accelerator: str) -> None:
    patch = [64.0, 64.0, 8.0]
    kernels, strides = rules.topology(patch, [0.8, 0.8, 4.0])
    choice = rules.network(kernels, strides, accelerator)
    net_class, args = network_args(choice.value, [4, 8, 16, 16, 16][: len(strides)], 3, 2, 3)
    if accelerator == "cpu":  # the first stage strided; the same total stride per axis as nnU-Net's
        assert net_class == "medlight.nets.ResUNet"
        assert np.prod(args["strides"], axis=0).tolist() == np.prod(strides, axis=0).tolist()
        assert args["strides"][0] == strides[1] and args["strides"][-1] == [1, 1, 1]
    else:
        assert net_class == "monai.networks.nets.DynUNet" and args["upsample_kernel_size"] == strides[1:]
    net = build_network(net_class, args)
    assert net(torch.randn(1, 2, *map(int, patch))).shape == (1, 3, 64, 64, 8)


def test_patch_fits_the_step_budget_and_batch_is_at_least_2() -> None:
    patch, batch, samples, _ = rules.patch_and_batch([300, 300, 200], [1.0, 1.0, 1.0], "cpu", 1e9, 100)
    assert batch >= rules.MIN_BATCH
    assert batch * samples * np.prod(patch) <= 1.3 * rules.STEP_VOXELS[("cpu", 3)]
    small, batch_small, _, _ = rules.patch_and_batch([36, 50, 35], [1.0, 1.0, 1.0], "cpu", 1e9, 100)
    assert all(s >= m for s, m in zip(small, [36, 50, 35]))  # the median case fits in one patch
    assert batch_small >= rules.MIN_BATCH


def test_normalisation_by_modality() -> None:
    ct = rules.normalisation(make_fp([(1, 1, 1)], [(10, 10, 10)], channels=("CT",))).value
    assert ct["intensity"] == "ct_dataset" and ct["ct_window"] == [-100.0, 300.0] and ct["dataset_stats"] == [50, 40]
    mri = rules.normalisation(make_fp([(1, 1, 1)], [(10, 10, 10)], channels=("FLAIR", "T1c"))).value
    assert mri == {"intensity": "zscore", "clip_percentiles": None}
    png = rules.normalisation(make_fp([(1, 1)], [(64, 64)], channels=("channel0",), dims=2, eight_bit=True))
    assert png.value["intensity"] == "zscore" and "8-bit" in png.reason


def test_label_map_for_0_255_masks() -> None:
    fp = make_fp([(1, 1)], [(8, 8)], dims=2, labels={0: "background", 255: "class255"})
    assert rules.label_map(fp) == {255: 1}
    assert rules.label_map(make_fp([(1, 1)], [(8, 8)], dims=2)) is None
