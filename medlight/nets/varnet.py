"""E2E-VarNet (Sriram et al. 2020) from MONAI's blocks, with optional hierarchical adapters (HierAdaptMR).

Coil sensitivities are estimated from the fully sampled centre lines (MONAI ``CoilSensitivityModel``); each
cascade (MONAI ``VarNetBlock``) applies a soft data-consistency step and a learned image-space refinement
(MONAI ``ComplexUnet`` around a ``BasicUNet``). A final hard data-consistency step puts the measured lines
back unchanged, and the output is the RSS magnitude.

Adapters sit inside every refinement U-Net at two places: after its bottleneck (``down_4``: coarse,
global features where contrast and intensity behaviour live, cheap at 1/16 resolution) and on its last
decoder features before the output convolution (full-resolution features where coil-shading, bias and
noise texture show). Inside rather than after the refinement network, because its 2-channel complex output
leaves an adapter too little to work with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.apps.reconstruction.networks.blocks.varnetblock import VarNetBlock
from monai.apps.reconstruction.networks.nets.coil_sensitivity_model import CoilSensitivityModel
from monai.apps.reconstruction.networks.nets.complex_unet import ComplexUnet
from monai.networks.nets import BasicUNet
from torch import Tensor, nn

from medlight.nets.adapters import AdapterRouter, HierarchicalAdapter
from medlight.ops.kspace import hard_data_consistency, ifft2c, rss

ACT = ("LeakyReLU", {"negative_slope": 0.1})


def refinement_unet(
    features: Sequence[int], protocols: Sequence[str], centers: Sequence[str], reduction: int, adapters: bool
) -> ComplexUnet:
    """A complex U-Net for one cascade; with ``adapters``, adapter slots after the bottleneck and the decoder."""
    unet = BasicUNet(spatial_dims=2, in_channels=2, out_channels=2, features=features, act=ACT)
    if adapters:
        bottleneck = HierarchicalAdapter(features[4], protocols, centers, reduction)
        unet.down_4 = nn.Sequential(unet.down_4, bottleneck)  # type: ignore[assignment]
        unet.final_conv = nn.Sequential(
            HierarchicalAdapter(features[5], protocols, centers, reduction), unet.final_conv
        )
    return ComplexUnet(conv_net=unet, pad_factor=16)


class VarNet(nn.Module):
    """Unrolled variational network for 2D multi-coil k-space, with optional hierarchical adapters.

    Args:
        num_cascades: data-consistency + refinement cascades.
        features: six feature counts of each cascade's refinement U-Net (MONAI ``BasicUNet``).
        sens_features: six feature counts of the sensitivity-estimation U-Net.
        protocols: protocol ids with their own adapters (empty and ``centers`` empty: no adapters at all).
        centers: center ids with their own adapters.
        adapter_reduction: bottleneck reduction of every adapter.
        universal_prob: probability of replacing a sample's center adapter by the universal one in training.
        final_dc: put the measured k-space lines back after the last cascade.
    """

    def __init__(
        self,
        num_cascades: int = 4,
        features: Sequence[int] = (8, 16, 32, 64, 128, 8),
        sens_features: Sequence[int] = (4, 8, 16, 32, 64, 4),
        protocols: Sequence[str] = (),
        centers: Sequence[str] = (),
        adapter_reduction: int = 4,
        universal_prob: float = 0.3,
        final_dc: bool = True,
    ) -> None:
        super().__init__()
        self.has_adapters = bool(protocols or centers)
        self.sens_net = CoilSensitivityModel(spatial_dims=2, features=sens_features)
        self.cascades = nn.ModuleList(
            VarNetBlock(refinement_unet(features, protocols, centers, adapter_reduction, self.has_adapters))
            for _ in range(num_cascades)
        )
        self.router = AdapterRouter(protocols, centers, universal_prob)
        self.final_dc = final_dc

    def adapters(self) -> list[HierarchicalAdapter]:
        return [m for m in self.modules() if isinstance(m, HierarchicalAdapter)]

    def forward_kspace(
        self,
        masked: Tensor,
        mask: Tensor,
        centers: Sequence[str] | None = None,
        protocols: Sequence[str] | None = None,
        calibration: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Reconstructed coil k-space (B, coils, H, W, 2) from undersampled k-space and its (B, 1, 1, W, 1) mask.

        ``calibration``: (k-space, mask) the sensitivity maps are estimated from, when not the input itself
        (SSDU feeds the network a subset of the acquired lines, but the maps come from all of them, as the
        paper's ESPIRiT maps do).
        """
        mask = mask.bool()
        if mask.shape[0] > 1 and not bool((mask == mask[:1]).all()):  # the sensitivity model needs one mask
            return torch.cat(
                [
                    self.forward_kspace(
                        masked[i : i + 1],
                        mask[i : i + 1],
                        *_pick(i, centers, protocols),
                        calibration=None
                        if calibration is None
                        else (calibration[0][i : i + 1], calibration[1][i : i + 1]),
                    )
                    for i in range(masked.shape[0])
                ]
            )
        routes = None
        if self.has_adapters and centers is not None and protocols is not None:
            routes = self.router(protocols, centers, self.training)
        for adapter in self.adapters():
            adapter.route = routes
        try:
            calib_kspace, calib_mask = calibration if calibration is not None else (masked, mask)
            sens = self.sens_net(calib_kspace, calib_mask.bool()[:1])
            kspace = masked.clone()
            for cascade in self.cascades:
                kspace = cascade(kspace, masked, mask, sens)
        finally:
            for adapter in self.adapters():
                adapter.route = None
        return hard_data_consistency(kspace, masked, mask) if self.final_dc else kspace

    def forward(
        self, masked: Tensor, mask: Tensor, centers: Sequence[str] | None = None, protocols: Sequence[str] | None = None
    ) -> Tensor:
        """RSS magnitude (B, H, W) of the reconstruction."""
        return rss(ifft2c(self.forward_kspace(masked, mask, centers, protocols)))


class ZeroFilled(nn.Module):
    """The zero-filled baseline: RSS of the inverse FFT of the undersampled k-space (no parameters)."""

    has_adapters = False

    def forward(
        self, masked: Tensor, mask: Tensor, centers: Sequence[str] | None = None, protocols: Sequence[str] | None = None
    ) -> Tensor:
        return rss(ifft2c(masked))


def _pick(
    i: int, centers: Sequence[str] | None, protocols: Sequence[str] | None
) -> tuple[list[str] | None, list[str] | None]:
    return (None if centers is None else [centers[i]]), (None if protocols is None else [protocols[i]])
