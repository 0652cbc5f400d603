"""Classical reconstructions from sigpy, as parameter-free "networks" with VarNet's call signature.

``net(masked_kspace, mask, centers, protocols) -> (B, H, W)`` magnitude, like :class:`medlight.nets.VarNet`
and :class:`medlight.nets.ZeroFilled`, so a reconstruction study lists them as variants. Coil sensitivities
come from ESPIRiT (``sigpy.mri.app.EspiritCalib``) on the fully sampled centre lines of each slice; the maps
are normalised (sum_c |S_c|^2 = 1 inside the object), so the magnitude of the coil-combined image is
comparable with the root-sum-of-squares reference. Each slice is reconstructed on the CPU with NumPy.

The regularisation weight ``lamda`` is a buffer (saved in checkpoints). ``lamda_grid`` lists candidates that
:class:`medlight.tasks.ReconstructionTask` scores on the validation volumes at the first validation; it
keeps the one with the best mean SSIM (logged as ``val/lamda``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sigpy.mri.app as mr_app
import torch
from torch import Tensor, nn

from medlight.ops.kspace import center_lines


class _SigpyRecon(nn.Module):
    has_adapters = False
    lamda: Tensor

    def __init__(self, lamda: float, lamda_grid: Sequence[float], max_iter: int, calib_width: int | None) -> None:
        super().__init__()
        self.register_buffer("lamda", torch.tensor(float(lamda), dtype=torch.float64))
        self.lamda_grid = tuple(float(v) for v in lamda_grid)
        self.max_iter, self.calib_width = max_iter, calib_width

    def forward(
        self, masked: Tensor, mask: Tensor, centers: Sequence[str] | None = None, protocols: Sequence[str] | None = None
    ) -> Tensor:
        kspace = torch.view_as_complex(masked.detach().float().cpu().contiguous()).numpy()
        columns = mask.detach().cpu().bool().reshape(mask.shape[0], -1)
        out = []
        for i, slice_kspace in enumerate(kspace):
            cols = columns[i if len(columns) > 1 else 0]
            calib = self.calib_width or max(center_lines(cols), 4)
            kernel = max(2, min(6, calib - 2))  # ESPIRiT's 6x6 kernel needs more lines than a small mask's centre
            weights = np.broadcast_to(cols.numpy().astype(np.float32), slice_kspace.shape[-2:])
            maps = mr_app.EspiritCalib(slice_kspace, calib_width=calib, kernel_width=kernel, show_pbar=False).run()
            out.append(np.abs(self.solve(slice_kspace, maps, np.ascontiguousarray(weights))))
        return torch.from_numpy(np.stack(out).astype(np.float32)).to(masked.device)

    def solve(self, kspace: np.ndarray, maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class SenseRecon(_SigpyRecon):
    """SENSE with ESPIRiT maps: Tikhonov-regularised least squares (``sigpy.mri.app.SenseRecon``, conjugate gradient).

    Args:
        lamda: Tikhonov weight (in units of the data module's normalised k-space).
        lamda_grid: candidates scored on validation (empty: keep ``lamda``).
        max_iter: conjugate-gradient iterations.
        calib_width: ESPIRiT calibration width (default: the mask's fully sampled centre lines).
    """

    def __init__(
        self,
        lamda: float = 0.01,
        lamda_grid: Sequence[float] = (),
        max_iter: int = 30,
        calib_width: int | None = None,
    ) -> None:
        super().__init__(lamda, lamda_grid, max_iter, calib_width)

    def solve(self, kspace: np.ndarray, maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
        app = mr_app.SenseRecon(
            kspace, maps, lamda=float(self.lamda), weights=weights, max_iter=self.max_iter, show_pbar=False
        )
        return app.run()


class L1WaveletCS(_SigpyRecon):
    """Compressed sensing: L1-wavelet regularised SENSE (``sigpy.mri.app.L1WaveletRecon``, Daubechies-4 wavelets).

    Args:
        lamda: L1 weight (in units of the data module's normalised k-space); chosen from ``lamda_grid``
            on the validation volumes at the first validation.
        lamda_grid: candidates scored on validation (empty: keep ``lamda``).
        max_iter: proximal-gradient iterations.
        calib_width: ESPIRiT calibration width (default: the mask's fully sampled centre lines).
    """

    def __init__(
        self,
        lamda: float = 0.0001,
        lamda_grid: Sequence[float] = (0.00001, 0.00003, 0.0001, 0.0003, 0.001),
        max_iter: int = 60,
        calib_width: int | None = None,
    ) -> None:
        super().__init__(lamda, lamda_grid, max_iter, calib_width)

    def solve(self, kspace: np.ndarray, maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
        app = mr_app.L1WaveletRecon(
            kspace, maps, float(self.lamda), weights=weights, max_iter=self.max_iter, show_pbar=False
        )
        return app.run()
