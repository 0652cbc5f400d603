"""Reconstruction loss: multi-scale SSIM, optionally mixed with L1 and a frequency-domain L1 term."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

# torchmetrics' (Wang et al. 2003) scale weights; fewer scales fit small images
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


class MSSSIML1Loss(nn.Module):
    """``ms_ssim_weight * (1 - MS-SSIM) + l1_weight * L1 + freq_weight * L1(|FFT|)`` on magnitude images.

    Each image pair is divided by the reference's maximum first, so the loss does not depend on a site's
    intensity scale (the data range of MS-SSIM is then 1).

    Args:
        ms_ssim_weight: weight of 1 - MS-SSIM.
        l1_weight: weight of the pixel L1 term.
        freq_weight: weight of the L1 distance between the magnitudes of the images' 2D FFTs.
        scales: MS-SSIM scales (5 needs images of at least ~(kernel_size - 1) * 16 pixels).
        kernel_size: Gaussian window of SSIM.
    """

    def __init__(
        self,
        ms_ssim_weight: float = 0.84,
        l1_weight: float = 0.16,
        freq_weight: float = 0.0,
        scales: int = 3,
        kernel_size: int = 7,
    ) -> None:
        super().__init__()
        if not 1 <= scales <= len(MS_SSIM_BETAS):
            raise ValueError(f"scales must be in 1..{len(MS_SSIM_BETAS)}, got {scales}")
        self.weights = (ms_ssim_weight, l1_weight, freq_weight)
        betas: Sequence[float] = MS_SSIM_BETAS[:scales]
        self.betas = tuple(b / sum(betas) for b in betas)
        self.kernel_size = kernel_size

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Loss of (B, H, W) magnitude images."""
        peak = target.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
        pred, target = (pred / peak)[:, None], (target / peak)[:, None]
        w_ssim, w_l1, w_freq = self.weights
        loss = torch.zeros((), device=pred.device)
        if w_ssim:
            ms_ssim = multiscale_structural_similarity_index_measure(
                pred, target, data_range=1.0, kernel_size=self.kernel_size, betas=self.betas, normalize="relu"
            )
            loss = loss + w_ssim * (1 - torch.as_tensor(ms_ssim))
        if w_l1:
            loss = loss + w_l1 * (pred - target).abs().mean()
        if w_freq:
            spectrum = lambda x: torch.fft.fft2(x, norm="ortho").abs()  # noqa: E731
            loss = loss + w_freq * (spectrum(pred) - spectrum(target)).abs().mean()
        return loss


def ssdu_kspace_loss(pred_kspace: Tensor, measured: Tensor, loss_mask: Tensor) -> Tensor:
    """SSDU's normalised L1-L2 k-space loss on the held-out lines (Yaman et al. 2020, eq. 8).

    ``||y_L - P_L k||_2 / ||y_L||_2 + ||y_L - P_L k||_1 / ||y_L||_1`` with y the measured (B, coils, H, W, 2)
    k-space, k the network's k-space prediction and P_L the loss mask (broadcastable, e.g. (B, 1, 1, W, 1)).
    The L1 norm is taken over complex magnitudes.
    """
    keep = loss_mask.bool().to(pred_kspace.dtype)
    diff, ref = (pred_kspace - measured) * keep, measured * keep
    eps = 1e-24  # sqrt has an infinite slope at 0: every line outside the loss mask would turn the gradient NaN
    l2 = (diff.pow(2).sum() + eps).sqrt() / ref.pow(2).sum().sqrt().clamp_min(1e-12)
    l1 = (diff.pow(2).sum(-1) + eps).sqrt().sum() / ref.pow(2).sum(-1).sqrt().sum().clamp_min(1e-12)
    return l2 + l1
