"""DeepLabV3+ (Chen et al. 2018), 2D and 3D: atrous encoder, ASPP, and a light decoder with a 1/4 skip.

The encoder is :class:`medlight.nets.backbone.DilatedResNet` (output stride 8 by default, so a 48x64
slice still gives a 6x8 map for ASPP). ASPP runs a 1x1 branch, dilated 3x3 branches and an image-pooling
branch in parallel; the decoder upsamples ASPP's output to 1/4, joins the reduced low-level features,
refines with two 3x3 convolutions, and the 1/4-resolution logits are interpolated back to the input
size (any size works).
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


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel dilated convolutions plus global context.

    The pooling branch has no normalisation: a 1x1 map cannot be instance- or (at batch 1) batch-normalised.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: channels of every branch and of the output.
        dilations: dilation of each 3x3 branch (besides the 1x1 and pooling branches).
        norm: MONAI normalisation name.
        act: MONAI activation name.
        dropout: dropout after the projection.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        dilations: Sequence[int] = (2, 4, 6),
        norm: str = "batch",
        act: str = "relu",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        branches = [Convolution(spatial_dims, in_channels, out_channels, kernel_size=1, act=act, norm=norm)]
        branches += [
            Convolution(spatial_dims, in_channels, out_channels, dilation=d, act=act, norm=norm) for d in dilations
        ]
        self.branches = nn.ModuleList(branches)
        self.pool = nn.Sequential(
            Pool["adaptiveavg", spatial_dims](1),
            Convolution(spatial_dims, in_channels, out_channels, kernel_size=1, act=act, norm=None),
        )
        self.project = Convolution(
            spatial_dims,
            out_channels * (len(branches) + 1),
            out_channels,
            kernel_size=1,
            act=act,
            norm=norm,
            dropout=dropout,
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(x).expand(-1, -1, *x.shape[2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ for 2D or 3D segmentation.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: classes, background included.
        channels: encoder stage channels (see :class:`DilatedResNet`).
        blocks: residual units per encoder stage.
        output_stride: 8 or 16.
        aspp_channels: channels of ASPP and of the decoder.
        dilations: ASPP dilations (small: the deep map of a 48x64 slice is only 6x8 at output stride 8).
        low_level_channels: channels the 1/4 skip is reduced to.
        norm: MONAI normalisation name.
        act: MONAI activation name.
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
        aspp_channels: int = 128,
        dilations: Sequence[int] = (2, 4, 6),
        low_level_channels: int = 32,
        norm: str = "batch",
        act: str = "relu",
        pretrained: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.encoder = DilatedResNet(spatial_dims, in_channels, channels, blocks, output_stride, norm, act)
        load_pretrained(self.encoder, pretrained)
        self.aspp = ASPP(spatial_dims, channels[-1], aspp_channels, dilations, norm, act)
        self.reduce = Convolution(spatial_dims, channels[1], low_level_channels, kernel_size=1, act=act, norm=norm)
        self.decoder = nn.Sequential(
            Convolution(spatial_dims, aspp_channels + low_level_channels, aspp_channels, act=act, norm=norm),
            Convolution(spatial_dims, aspp_channels, aspp_channels, act=act, norm=norm),
        )
        self.head = Convolution(spatial_dims, aspp_channels, out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: Tensor) -> Tensor:
        low, deep = self.encoder(x)
        deep = resize_to(self.aspp(deep), low.shape[2:])
        features = self.decoder(torch.cat([deep, self.reduce(low)], dim=1))
        # logits at 1/4 resolution, interpolated to the input size (as in the paper; cheap on CPU)
        return resize_to(self.head(features), x.shape[2:])
