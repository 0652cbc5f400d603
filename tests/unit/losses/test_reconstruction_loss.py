"""The MS-SSIM (+L1, +frequency) reconstruction loss."""

import pytest
import torch

from medlight.losses import MSSSIML1Loss


def test_zero_for_a_perfect_reconstruction_at_any_scale() -> None:
    target = torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(0)) * 7
    loss = MSSSIML1Loss(freq_weight=0.1)
    assert loss(target, target).item() == pytest.approx(0.0, abs=1e-5)


def test_l1_term_by_hand_and_scale_invariance() -> None:
    target = torch.ones(1, 64, 64) * 4
    pred = target * 0.5
    l1_only = MSSSIML1Loss(ms_ssim_weight=0, l1_weight=1)
    assert l1_only(pred, target).item() == pytest.approx(0.5)  # |2 - 4| / 4 after dividing by the peak
    full = MSSSIML1Loss()
    assert full(pred * 10, target * 10).item() == pytest.approx(full(pred, target).item(), rel=1e-5)


def test_gradient_flows_and_grows_with_error() -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.rand(1, 64, 64, generator=g)
    near = (target + 0.02 * torch.randn(1, 64, 64, generator=g)).requires_grad_()
    far = target + 0.3 * torch.randn(1, 64, 64, generator=g)
    loss = MSSSIML1Loss()
    value = loss(near, target)
    value.backward()
    assert near.grad is not None and torch.isfinite(near.grad).all()
    assert value.item() < loss(far, target).item()


def test_too_many_scales_is_refused() -> None:
    with pytest.raises(ValueError, match="scales"):
        MSSSIML1Loss(scales=6)


def test_ssdu_kspace_loss_sees_only_the_held_out_lines() -> None:
    from medlight.losses.reconstruction import ssdu_kspace_loss

    measured = torch.randn(1, 2, 8, 6, 2)
    loss_mask = torch.tensor([0, 1, 0, 0, 1, 0], dtype=torch.bool).view(1, 1, 1, -1, 1)
    pred = torch.where(loss_mask, measured, torch.randn_like(measured))  # right on the loss lines only
    assert float(ssdu_kspace_loss(pred, measured, loss_mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(ssdu_kspace_loss(torch.zeros_like(measured), measured, loss_mask)) == pytest.approx(2.0, abs=1e-5)


def test_ssdu_kspace_loss_has_finite_gradients_where_the_prediction_is_exact() -> None:
    from medlight.losses.reconstruction import ssdu_kspace_loss

    measured = torch.randn(1, 2, 8, 6, 2)
    loss_mask = torch.tensor([0, 1, 0, 0, 1, 0], dtype=torch.bool).view(1, 1, 1, -1, 1)
    pred = torch.where(loss_mask, measured + 0.1, measured).requires_grad_()  # exact outside the loss lines
    ssdu_kspace_loss(pred, measured, loss_mask).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
