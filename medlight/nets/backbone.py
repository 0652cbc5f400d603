"""A small dilated residual encoder (2D or 3D) for DeepLabV3+ and PSPNet.

A ResNet-style stem (stride 2) and four stages of MONAI ``ResidualUnit``s. The later stages trade stride
for dilation (the "atrous" trick of DeepLab and PSPNet): the deepest features stay at 1/``output_stride``
of the input, so small medical patches (48x64 slices, 32x48x32 volumes) still give a usable map.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.blocks import Convolution, ResidualUnit
from torch import Tensor, nn


class DilatedResNet(nn.Module):
    """Residual encoder returning low-level (1/4) and deep (1/``output_stride``) features.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        channels: output channels of the four stages.
        blocks: residual units per stage.
        output_stride: 8 or 16: the resolution of the deepest features relative to the input.
        norm: MONAI normalisation name.
        act: MONAI activation name.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128, 256),
        blocks: Sequence[int] = (1, 1, 2, 1),
        output_stride: int = 8,
        norm: str = "batch",
        act: str = "relu",
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        if len(channels) != 4 or len(blocks) != 4:
            raise ValueError(f"channels and blocks need 4 values each, got {channels} and {blocks}")
        # the last stage keeps the resolution at output stride 8 and dilates instead
        strides = (1, 2, 2, 1) if output_stride == 8 else (1, 2, 2, 2)
        dilations = (1, 1, 1, 2) if output_stride == 8 else (1, 1, 1, 1)
        self.out_channels = list(channels)
        self.stem = Convolution(spatial_dims, in_channels, channels[0], strides=2, act=act, norm=norm)
        stages = []
        c_in = channels[0]
        for i, (c_out, n) in enumerate(zip(channels, blocks)):
            units = [
                ResidualUnit(
                    spatial_dims,
                    c_in if j == 0 else c_out,
                    c_out,
                    strides=strides[i] if j == 0 else 1,
                    subunits=2,
                    act=act,
                    norm=norm,
                    dilation=dilations[i],
                )
                for j in range(n)
            ]
            stages.append(nn.Sequential(*units))
            c_in = c_out
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Low-level features (after stage 2, 1/4 of the input) and the deepest features."""
        x = self.stem(x)
        x = self.stages[0](x)
        low = x = self.stages[1](x)
        for stage in self.stages[2:]:
            x = stage(x)
        return low, x
