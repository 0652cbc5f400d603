"""Classical reconstructions (sigpy): SENSE with ESPIRiT maps and L1-wavelet CS on a simulated phantom."""

import numpy as np
import pytest
import torch

from medlight.data.kspace.simulation import CenterSpec, acquire
from medlight.metrics.reconstruction import volume_metrics
from medlight.nets import L1WaveletCS, SenseRecon, ZeroFilled
from medlight.ops.kspace import ifft2c, rss, scanner_mask, to_real


def _phantom_kspace() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noiseless 8-loop-coil k-space of a smooth phantom (object inside the field of view), 96 x 81 matrix,
    with realistic phase; masked every 3rd line + 16 centre lines, normalised as the data module does."""
    sigpy = pytest.importorskip("sigpy")
    h, w = 96, 81
    image = np.zeros((h, w), np.float32)
    image[14:82, 12:69] = np.abs(sigpy.shepp_logan((68, 57)))
    center = CenterSpec("P", coils=8, coil_model="loops", coil_radius=1.4, loop_radius=0.5, phase=1.5,
                        susceptibility=2.0, bias=0.0, noise=0.0)  # fmt: skip
    kspace = to_real(acquire(image[None], center, np.random.default_rng(0)))
    mask = scanner_mask(w, 3, 16).view(1, 1, 1, -1, 1)
    masked = kspace * mask
    scale = rss(ifft2c(masked)).amax()
    return masked / scale, mask, rss(ifft2c(kspace)) / scale


def test_sense_with_espirit_maps_recovers_the_phantom() -> None:
    masked, mask, target = _phantom_kspace()
    sense = SenseRecon(lamda=0.0001, max_iter=50)(masked, mask)
    zero_filled = ZeroFilled()(masked, mask)
    assert sense.shape == target.shape == (1, 96, 81)
    nmse = float(((sense - target) ** 2).sum() / (target**2).sum())
    assert nmse < 1e-3  # stated tolerance: NMSE below 0.1% of the image energy at net acceleration ~2.2
    assert volume_metrics(sense, target)[0] > volume_metrics(zero_filled, target)[0] + 10  # > 10 dB over zero-filled


def test_l1_wavelet_cs_beats_zero_filled_and_keeps_lamda_in_its_state() -> None:
    masked, mask, target = _phantom_kspace()
    cs = L1WaveletCS(lamda=0.0001, max_iter=40)
    assert "lamda" in cs.state_dict() and cs.lamda_grid and not list(cs.parameters())
    pred = cs(masked, mask)
    assert volume_metrics(pred, target)[0] > volume_metrics(ZeroFilled()(masked, mask), target)[0] + 5
