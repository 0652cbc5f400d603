"""PSPNet (Zhao et al. 2017), 2D and 3D: a dilated residual encoder and a pyramid pooling module.

The deepest features (1/8 of the input) are average-pooled to several grid sizes (1, 2, 3, 6 bins per
axis), each reduced by a 1x1 convolution, upsampled back and concatenated with the features: global and
sub-region context for every pixel. A 3x3 convolution fuses them, and the logits are interpolated to the
input size (any size works). The auxiliary loss of the paper is left out (one output, as the task expects).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from torch import Tensor, nn

from medlight.nets.backbone import DilatedResNet
from medlight.nets.common import load_pretrained, resize_to


class PyramidPooling(nn.Module):
    """Pool to each bin size, reduce with a 1x1 convolution, upsample, concatenate with the input.

    The pooled branches have no normalisation: a 1x1 map cannot be instance- or (at batch 1) batch-normalised.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        bins: output grid size of each pooling branch.
        act: MONAI activation name.
    """

    def __init__(self, spatial_dims: int, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6), act: str = "relu"):
        super().__init__()
        reduced = max(in_channels // len(bins), 1)
        self.branches = nn.ModuleList(
            nn.Sequential(
                Pool["adaptiveavg", spatial_dims](b),
                Convolution(spatial_dims, in_channels, reduced, kernel_size=1, act=act, norm=None),
            )
            for b in bins
        )
        self.out_channels = in_channels + reduced * len(bins)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, *(resize_to(b(x), x.shape[2:]) for b in self.branches)], dim=1)


class PSPNet(nn.Module):
    """Pyramid scene parsing network for 2D or 3D segmentation.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: classes, background included.
        channels: encoder stage channels (see :class:`medlight.nets.backbone.DilatedResNet`).
        blocks: residual units per encoder stage.
        output_stride: 8 or 16.
        bins: pyramid grid sizes.
        fuse_channels: channels after the fusing 3x3 convolution.
        norm: MONAI normalisation name.
        act: MONAI activation name.
        dropout: dropout before the classifier.
        pretrained: optional local file with encoder weights (keys as in ``DilatedResNet``).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = (32, 64, 128, 256),
        blocks: Sequence[int] = (1, 1, 2, 1),
        output_stride: int = 8,
        bins: Sequence[int] = (1, 2, 3, 6),
        fuse_channels: int = 128,
        norm: str = "batch",
        act: str = "relu",
        dropout: float = 0.1,
        pretrained: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.encoder = DilatedResNet(spatial_dims, in_channels, channels, blocks, output_stride, norm, act)
        load_pretrained(self.encoder, pretrained)
        self.ppm = PyramidPooling(spatial_dims, channels[-1], bins, act)
        self.fuse = Convolution(spatial_dims, self.ppm.out_channels, fuse_channels, act=act, norm=norm, dropout=dropout)
        self.head = Convolution(spatial_dims, fuse_channels, out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: Tensor) -> Tensor:
        _, deep = self.encoder(x)
        return resize_to(self.head(self.fuse(self.ppm(deep))), x.shape[2:])
