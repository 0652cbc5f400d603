"""Reconstruction metrics on RSS magnitude volumes, fastMRI conventions: PSNR, SSIM, NMSE per volume.

The data range of a volume is the maximum of its reference (target); SSIM uses a uniform 7x7 window per
slice (as fastMRI's scikit-image evaluation does) and is averaged over slices.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

RECON_METRICS = ("psnr", "ssim", "nmse")


def nmse(pred: Tensor, target: Tensor) -> Tensor:
    """Normalised mean squared error ||pred - target||^2 / ||target||^2 (0 is perfect)."""
    return (pred - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-20)


def psnr(pred: Tensor, target: Tensor, data_range: float | Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio in dB, 10 log10(range^2 / MSE), range = max(target) unless given."""
    data_range = target.max() if data_range is None else torch.as_tensor(data_range)
    mse = (pred - target).pow(2).mean().clamp_min(1e-20)
    return 10 * torch.log10(data_range**2 / mse)


def ssim(pred: Tensor, target: Tensor, data_range: float | Tensor | None = None) -> Tensor:
    """Mean SSIM over the slices of (slices, H, W) volumes, uniform 7x7 window, range = max(target)."""
    data_range = float(target.max()) if data_range is None else float(data_range)
    value = structural_similarity_index_measure(
        pred[:, None].float(), target[:, None].float(), gaussian_kernel=False, kernel_size=7, data_range=data_range
    )
    return torch.as_tensor(value)


def volume_metrics(pred: Tensor, target: Tensor) -> Tensor:
    """``[psnr, ssim, nmse]`` of a (slices, H, W) reconstruction against its reference."""
    pred, target = pred.detach().float(), target.detach().float()
    return torch.stack([psnr(pred, target), ssim(pred, target), nmse(pred, target)])
