"""k-space maths for multi-coil MRI: centred FFTs, coil combination, Cartesian masks, data consistency.

Conventions (those of ``monai.apps.reconstruction`` and fastMRI): complex tensors are stored as real tensors
with a trailing dimension of 2 (real, imaginary); a 2D multi-coil k-space is (B, coils, H, W, 2); the
orthonormal centred FFT runs over H and W; undersampling keeps whole columns (phase-encoding lines along W),
so a mask is (W,) and broadcasts as (1, 1, 1, W, 1).
"""

from __future__ import annotations

import zlib
from typing import Literal

import numpy as np
import torch
from monai.apps.reconstruction.complex_utils import complex_abs_t, complex_conj_t, complex_mul_t
from monai.apps.reconstruction.mri_utils import root_sum_of_squares_t
from monai.apps.reconstruction.transforms.array import EquispacedKspaceMask, RandomKspaceMask
from monai.networks.blocks.fft_utils_t import fftn_centered_t, ifftn_centered_t
from torch import Tensor

MaskKind = Literal["equispaced", "random"]


def fft2c(image: Tensor) -> Tensor:
    """Orthonormal centred 2D FFT of (..., H, W, 2) complex images."""
    return fftn_centered_t(image, spatial_dims=2, is_complex=True)


def ifft2c(kspace: Tensor) -> Tensor:
    """Orthonormal centred 2D inverse FFT of (..., H, W, 2) complex k-space."""
    return ifftn_centered_t(kspace, spatial_dims=2, is_complex=True)


def rss(coil_images: Tensor, coil_dim: int = 1) -> Tensor:
    """Root-sum-of-squares magnitude over coils of complex (..., coils, H, W, 2) images -> (..., H, W)."""
    return root_sum_of_squares_t(complex_abs_t(coil_images), spatial_dim=coil_dim)


def coil_combine(coil_images: Tensor, sens_maps: Tensor) -> Tensor:
    """Sensitivity-weighted combination sum_c conj(S_c) x_c: (B, coils, H, W, 2) -> (B, 1, H, W, 2)."""
    return complex_mul_t(coil_images, complex_conj_t(sens_maps)).sum(dim=1, keepdim=True)


def coil_expand(image: Tensor, sens_maps: Tensor) -> Tensor:
    """Coil images S_c x of a combined (B, 1, H, W, 2) image: the adjoint of :func:`coil_combine`."""
    return complex_mul_t(image, sens_maps)


def hard_data_consistency(kspace: Tensor, measured: Tensor, mask: Tensor) -> Tensor:
    """Replace the sampled lines of ``kspace`` by the measurement; unsampled lines stay as predicted.

    Args:
        kspace: predicted k-space (B, coils, H, W, 2).
        measured: undersampled measurement, same shape (zero where not sampled).
        mask: boolean sampling mask broadcastable to the k-space, e.g. (B, 1, 1, W, 1).
    """
    return torch.where(mask.bool(), measured, kspace)


def cartesian_mask(
    width: int,
    acceleration: float,
    center_fraction: float,
    kind: MaskKind = "equispaced",
    seed: int = 0,
) -> Tensor:
    """A boolean (W,) mask of sampled columns, from MONAI's k-space mask transforms.

    ``center_fraction * width`` centre columns (the auto-calibration lines) are always sampled; the others
    are picked equispaced (random offset) or uniformly at random so that about ``width / acceleration``
    columns are sampled in all. The same ``seed`` always gives the same mask.
    """
    if acceleration < 1 or not 0 < center_fraction <= 1 / acceleration:
        raise ValueError(
            f"mask needs acceleration >= 1 and 0 < center_fraction <= 1/acceleration, got "
            f"acceleration={acceleration}, center_fraction={center_fraction}"
        )
    maker_cls = EquispacedKspaceMask if kind == "equispaced" else RandomKspaceMask
    maker = maker_cls(center_fractions=[center_fraction], accelerations=[acceleration], spatial_dims=2)
    maker.set_random_state(seed=seed % (2**32))
    maker(torch.zeros(1, 1, width, 2))  # the transform draws its mask while masking this dummy k-space
    return maker.mask.reshape(-1).bool()


def case_seed(case_id: str, seed: int = 0) -> int:
    """A stable seed per case (the same mask for a volume in every run and on every machine)."""
    return (zlib.crc32(case_id.encode()) + 7919 * seed) % (2**31)


def center_lines(mask: Tensor) -> int:
    """Number of contiguous sampled columns around the k-space centre (the auto-calibration region)."""
    m = mask.reshape(-1).bool()
    mid = m.numel() // 2
    if not m[mid]:
        return 0
    left = mid
    while left > 0 and m[left - 1]:
        left -= 1
    right = mid
    while right < m.numel() - 1 and m[right + 1]:
        right += 1
    return right - left + 1


def to_real(array: np.ndarray) -> Tensor:
    """A complex NumPy array as a float32 tensor with a trailing (real, imaginary) dimension."""
    return torch.view_as_real(torch.from_numpy(np.ascontiguousarray(array, dtype=np.complex64)))


def scanner_mask(width: int, spacing: int, center_lines: int, kind: MaskKind = "equispaced", seed: int = 0) -> Tensor:
    """A boolean (W,) mask as a scanner's parallel-imaging protocol sets it: ``center_lines`` fully sampled
    centre lines (the auto-calibration signal) plus every ``spacing``-th line counted from the centre line
    (``equispaced``), or as many lines as that drawn uniformly at random outside the centre (``random``).

    Unlike :func:`cartesian_mask`, whose ``acceleration`` counts the centre lines, ``spacing`` is the
    scanner's acceleration factor R: the net acceleration is lower, width / (width / R + centre lines).
    """
    if spacing < 1 or not 0 < center_lines <= width:
        raise ValueError(f"scanner mask needs spacing >= 1 and 0 < center_lines <= width: {spacing}, {center_lines}")
    mid = width // 2
    mask = torch.zeros(width, dtype=torch.bool)
    mask[mid - center_lines // 2 : mid - center_lines // 2 + center_lines] = True
    lines = torch.arange(width)
    if kind == "equispaced":
        return mask | ((lines - mid) % spacing == 0)
    outside = lines[~mask]
    count = min(len(outside), max(0, round(width / spacing) - int(((lines - mid) % spacing == 0)[mask].sum())))
    pick = torch.randperm(len(outside), generator=torch.Generator().manual_seed(seed % (2**63)))[:count]
    mask[outside[pick]] = True
    return mask


def ssdu_split(
    mask: Tensor,
    loss_fraction: float = 0.4,
    keep_center: int | None = None,
    seed: int = 0,
    density: Literal["uniform", "gaussian"] = "uniform",
) -> tuple[Tensor, Tensor]:
    """Split a (W,) sampling mask into disjoint data-consistency and loss masks (SSDU, Yaman et al. 2020).

    ``loss_fraction`` of the sampled lines, drawn at random outside a protected centre (``keep_center`` lines,
    default: the contiguous centre block of the mask, see :func:`center_lines`), form the loss mask; all other
    sampled lines, the protected centre included, form the data-consistency mask. The two are disjoint and
    together are exactly ``mask``. ``density``: ``uniform`` over the candidates, or ``gaussian`` around the
    centre line with standard deviation W / 4 (the SSDU paper's selection), which puts more loss lines where
    the signal is and less on noise-dominated outer k-space.
    """
    m = mask.reshape(-1).bool()
    if not 0 < loss_fraction < 1:
        raise ValueError(f"loss_fraction must be in (0, 1), got {loss_fraction}")
    mid = m.numel() // 2
    protected = torch.zeros_like(m)
    if keep_center is None:  # the contiguous sampled block around the centre line
        left = right = mid
        while left > 0 and m[left - 1]:
            left -= 1
        while right < m.numel() - 1 and m[right + 1]:
            right += 1
        protected[left : right + 1] = bool(m[mid])
    else:
        protected[mid - keep_center // 2 : mid - keep_center // 2 + keep_center] = True
    candidates = torch.nonzero(m & ~protected).reshape(-1)
    count = min(len(candidates), round(loss_fraction * int(m.sum())))
    generator = torch.Generator().manual_seed(seed % (2**63))
    if density == "gaussian" and count:
        weights = torch.exp(-0.5 * ((candidates - mid).double() / (m.numel() / 4)) ** 2)
        pick = candidates[torch.multinomial(weights, count, replacement=False, generator=generator)]
    else:
        pick = candidates[torch.randperm(len(candidates), generator=generator)[:count]]
    loss = torch.zeros_like(m)
    loss[pick] = True
    return m & ~loss, loss


def crop_readout(kspace: np.ndarray, size: int, axis: int = -2) -> np.ndarray:
    """Remove readout oversampling: inverse FFT along the readout ``axis``, keep the central ``size`` samples of
    the image, FFT back (as ISMRMRD's reconstruction examples do). Centred, orthonormal transforms."""
    n = kspace.shape[axis]
    if size >= n:
        return kspace
    image = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(kspace, axes=axis), axis=axis, norm="ortho"), axes=axis)
    start = (n - size) // 2
    image = np.take(image, np.arange(start, start + size), axis=axis)
    out = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(image, axes=axis), axis=axis, norm="ortho"), axes=axis)
    return out.astype(np.complex64)
