"""Reconstruction metrics on hand-made tensors with values computed by hand."""

import math

import pytest
import torch

from medlight.metrics.reconstruction import nmse, psnr, ssim, volume_metrics


def test_psnr_and_nmse_by_hand() -> None:
    target = torch.ones(1, 2, 2)
    pred = target.clone()
    pred[0, 0, 0] = 1.5  # one error of 0.5 among 4 pixels: MSE = 0.0625
    assert psnr(pred, target).item() == pytest.approx(10 * math.log10(1 / 0.0625))  # 12.041 dB
    assert nmse(pred, target).item() == pytest.approx(0.25 / 4)
    assert psnr(pred, target, data_range=2.0).item() == pytest.approx(10 * math.log10(4 / 0.0625))


def test_perfect_reconstruction() -> None:
    target = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0)) + 0.1
    values = volume_metrics(target, target)
    assert values[0] > 150  # MSE clamped at 1e-20 -> ~200 dB
    assert values[1].item() == pytest.approx(1.0)
    assert values[2].item() == pytest.approx(0.0)


def test_ssim_of_a_constant_offset() -> None:
    # constant images: structure and contrast terms are (C2)/(C2) = 1; luminance term by hand
    target = torch.full((1, 16, 16), 0.5)
    pred = torch.full((1, 16, 16), 0.25)
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1)
    assert ssim(pred, target, data_range=1.0).item() == pytest.approx(expected, rel=1e-4)


def test_worse_reconstruction_scores_worse() -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 16, 16, generator=g)
    small = volume_metrics(target + 0.01 * torch.randn(2, 16, 16, generator=g), target)
    large = volume_metrics(target + 0.1 * torch.randn(2, 16, 16, generator=g), target)
    assert small[0] > large[0] and small[1] > large[1] and small[2] < large[2]
