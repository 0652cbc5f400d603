"""k-space maths: FFT round trips, coil combination, masks, data consistency."""

import numpy as np
import pytest
import torch

from medlight.ops.kspace import (
    cartesian_mask,
    case_seed,
    center_lines,
    coil_combine,
    coil_expand,
    fft2c,
    hard_data_consistency,
    ifft2c,
    rss,
)


def _complex(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, 2, generator=torch.Generator().manual_seed(seed))


def test_fft_round_trip_and_parseval() -> None:
    image = _complex(2, 3, 16, 12)
    kspace = fft2c(image)
    torch.testing.assert_close(ifft2c(kspace), image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fft2c(ifft2c(image)), image, atol=1e-5, rtol=1e-5)
    # orthonormal: energy is the same in both domains
    torch.testing.assert_close((kspace**2).sum(), (image**2).sum(), rtol=1e-5, atol=1e-4)


def test_fft_of_a_constant_is_a_centred_peak() -> None:
    image = torch.zeros(1, 8, 8, 2)
    image[..., 0] = 1.0
    kspace = fft2c(image)
    assert kspace[0, 4, 4, 0] == pytest.approx(8.0)  # sqrt(64) with the orthonormal scaling, at the centre
    assert kspace.abs().sum() == pytest.approx(8.0)


def test_rss_of_known_coil_images() -> None:
    coils = torch.zeros(1, 2, 1, 1, 2)
    coils[0, 0, 0, 0] = torch.tensor([3.0, 0.0])
    coils[0, 1, 0, 0] = torch.tensor([0.0, 4.0])
    assert rss(coils).item() == pytest.approx(5.0)


def test_coil_combine_inverts_expand_for_normalised_maps() -> None:
    sens = _complex(2, 4, 8, 8, seed=1)
    sens = sens / rss(sens).unsqueeze(1).unsqueeze(-1)  # sum_c |S_c|^2 = 1 everywhere
    image = _complex(2, 1, 8, 8, seed=2)
    torch.testing.assert_close(coil_combine(coil_expand(image, sens), sens), image, atol=1e-5, rtol=1e-5)
    # and the RSS of the coil images is the image magnitude
    torch.testing.assert_close(rss(coil_expand(image, sens)), rss(image), atol=1e-5, rtol=1e-5)


def test_hard_data_consistency_keeps_sampled_lines_exactly() -> None:
    measured_full = _complex(1, 3, 8, 16, seed=3)
    mask = cartesian_mask(16, 4, 0.125, seed=5).view(1, 1, 1, 16, 1)
    measured = measured_full * mask
    predicted = _complex(1, 3, 8, 16, seed=4)
    out = hard_data_consistency(predicted, measured, mask)
    cols = mask.view(-1)
    assert torch.equal(out[..., cols, :], measured_full[..., cols, :])
    assert torch.equal(out[..., ~cols, :], predicted[..., ~cols, :])


@pytest.mark.parametrize("kind", ["equispaced", "random"])
@pytest.mark.parametrize("acceleration,fraction", [(4, 0.08), (8, 0.04)])
def test_mask_acceleration_and_centre_lines(kind: str, acceleration: int, fraction: float) -> None:
    width = 320
    mask = cartesian_mask(width, acceleration, fraction, kind=kind, seed=11)  # type: ignore[arg-type]
    assert mask.shape == (width,) and mask.dtype == torch.bool
    low = round(width * fraction)
    start = (width - low + 1) // 2
    assert mask[start : start + low].all()
    assert center_lines(mask) >= low
    achieved = width / mask.sum().item()
    tolerance = 0.1 if kind == "equispaced" else 0.3  # random masks only hit the rate in expectation
    assert abs(achieved - acceleration) / acceleration < tolerance, achieved


def test_mask_is_fixed_by_its_seed() -> None:
    seed = case_seed("centerA_t1_001")
    assert torch.equal(cartesian_mask(64, 4, 0.08, "random", seed), cartesian_mask(64, 4, 0.08, "random", seed))
    assert seed == case_seed("centerA_t1_001") and seed != case_seed("centerA_t1_002")


def test_mask_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="center_fraction"):
        cartesian_mask(64, 4, 0.5)


# -- scanner masks, SSDU split, readout crop ---------------------------------------------------------------
def test_scanner_mask_counts_centre_lines_in_lines() -> None:
    from medlight.ops.kspace import center_lines, scanner_mask

    mask = scanner_mask(87, 4, 24, "equispaced")
    assert center_lines(mask) >= 24 and mask[87 // 2]
    outside = torch.nonzero(mask).reshape(-1)
    assert all((i - 87 // 2) % 4 == 0 for i in outside if abs(int(i) - 87 // 2) > 12)  # every 4th line outside
    random = scanner_mask(87, 4, 24, "random", seed=3)
    assert center_lines(random) >= 24 and torch.equal(random, scanner_mask(87, 4, 24, "random", seed=3))
    assert abs(int(random.sum()) - round(87 / 4) - 18) <= 6  # about as many lines as the equispaced mask


@pytest.mark.parametrize("seed", range(5))
def test_ssdu_split_is_disjoint_and_covers_every_sampled_line(seed: int) -> None:
    from medlight.ops.kspace import cartesian_mask, center_lines, ssdu_split

    mask = cartesian_mask(96, 4, 0.08, "random", seed=seed)
    dc, loss = ssdu_split(mask, 0.4, seed=seed)
    assert not (dc & loss).any()  # disjoint
    assert torch.equal(dc | loss, mask)  # together exactly the sampled lines
    assert center_lines(dc) == center_lines(mask)  # the fully sampled centre stays in the data-consistency set
    assert abs(int(loss.sum()) - 0.4 * int(mask.sum())) <= 1
    assert not torch.equal(loss, ssdu_split(mask, 0.4, seed=seed + 1)[1])  # a fresh split per seed


def test_gaussian_ssdu_split_holds_out_calibration_lines_near_the_centre() -> None:
    from medlight.ops.kspace import scanner_mask, ssdu_split

    mask = scanner_mask(87, 4, 12)  # every 4th line + 12 centre lines, as scanners sample
    mid, distances = 87 // 2, {"uniform": [], "gaussian": []}
    for seed in range(20):
        for density in distances:
            dc, loss = ssdu_split(mask, 0.4, keep_center=4, seed=seed, density=density)  # type: ignore[arg-type]
            assert not (dc & loss).any() and torch.equal(dc | loss, mask)
            assert dc[mid - 2 : mid + 2].all()  # the small protected block
            assert abs(int(loss.sum()) - 0.4 * int(mask.sum())) <= 1
            distances[density] += (torch.nonzero(loss).reshape(-1) - mid).abs().tolist()
    assert any(d < 6 for d in distances["gaussian"])  # calibration lines enter the loss set
    assert np.mean(distances["gaussian"]) < 0.8 * np.mean(distances["uniform"])  # nearer the centre


def test_crop_readout_keeps_the_central_image() -> None:
    from medlight.ops.kspace import crop_readout

    image = np.zeros((2, 16, 5), np.complex64)
    image[:, 4:12] = np.random.default_rng(0).standard_normal((2, 8, 5))
    kspace = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(image, axes=1), axis=1, norm="ortho"), axes=1)
    cropped = crop_readout(kspace, 8, axis=1)
    back = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(cropped, axes=1), axis=1, norm="ortho"), axes=1)
    np.testing.assert_allclose(back, image[:, 4:12], atol=1e-5)
