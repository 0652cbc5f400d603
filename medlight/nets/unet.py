"""UNet, Res-UNet and Attention Res-UNet (2D and 3D) as one encoder-decoder with two switches.

* ``UNet``: each stage is two conv-norm-activation layers; downsampling by strided convolution.
* ``ResUNet``: each stage is a MONAI ``ResidualUnit`` (two convolutions plus a residual connection).
* ``AttentionResUNet``: residual stages *and* an attention gate (MONAI ``AttentionBlock``) on every skip
  connection, as in Ehab & Li's comparison; MONAI's ``AttentionUnet`` alone has no residual units.

The last layer is a 1x1 convolution named ``head``; whatever feeds it is what ``forward_features``
returns, so methods that need per-voxel features (e.g. contrastive heads) can use any of these networks.
Inputs of any size are padded to a multiple of the total stride and the output is cropped back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.nets.attentionunet import AttentionBlock
from torch import Tensor, nn


class EncoderDecoderUNet(nn.Module):
    """A U-shaped network whose stages are plain or residual, with optional attention-gated skips.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (classes, background included).
        channels: feature channels per resolution level, shallow to deep.
        strides: downsampling stride of each level. ``len(channels) - 1`` values: the first level works at
            full resolution (the textbook UNet). ``len(channels)`` values: the first level already
            downsamples and a transposed convolution restores full resolution before the head, as MONAI's
            UNet does; several times cheaper on CPU, since no stage convolves at full resolution. A stride is
            an int or one value per axis (e.g. ``[2, 2, 1]`` keeps a coarse slice axis).
        residual: residual units instead of plain double convolutions.
        attention: attention gates on the skip connections.
        norm: normalisation layer name (MONAI naming: ``instance``, ``batch``, ...).
        act: activation name (MONAI naming).
        dropout: dropout probability inside the stages.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int | Sequence[int]] = (2, 2, 2),
        norm: str = "instance",
        act: str = "prelu",
        dropout: float = 0.0,
        *,
        residual: bool = False,
        attention: bool = False,
    ) -> None:
        super().__init__()
        if len(strides) not in (len(channels) - 1, len(channels)):
            raise ValueError(
                f"strides needs {len(channels) - 1} or {len(channels)} values for {len(channels)} levels, got {strides}"
            )
        strides = [1, *strides] if len(strides) == len(channels) - 1 else list(strides)
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        per_axis = [[s] * spatial_dims if isinstance(s, int) else list(s) for s in strides]
        self.total_stride = [math.prod(s[a] for s in per_axis) for a in range(spatial_dims)]

        def stage(c_in: int, c_out: int, stride: int | Sequence[int]) -> nn.Module:
            if residual:
                return ResidualUnit(
                    spatial_dims, c_in, c_out, strides=stride, subunits=2, act=act, norm=norm, dropout=dropout
                )
            return nn.Sequential(
                Convolution(spatial_dims, c_in, c_out, strides=stride, act=act, norm=norm, dropout=dropout),
                Convolution(spatial_dims, c_out, c_out, act=act, norm=norm, dropout=dropout),
            )

        levels = list(channels)

        def up(c_in: int, c_out: int, stride: int | Sequence[int]) -> nn.Module:
            return Convolution(
                spatial_dims,
                c_in,
                c_out,
                strides=stride,
                kernel_size=stride,
                act=act,
                norm=norm,
                is_transposed=True,
                padding=0,
                output_padding=0,
            )

        self.encoder = nn.ModuleList(
            stage(c_in, c_out, s) for c_in, c_out, s in zip([in_channels, *levels[:-1]], levels, strides)
        )
        self.up = nn.ModuleList(up(levels[i + 1], levels[i], strides[i + 1]) for i in range(len(levels) - 1))
        self.final_up = up(levels[0], levels[0], strides[0]) if max(per_axis[0]) > 1 else nn.Identity()
        self.gates = nn.ModuleList(
            AttentionBlock(spatial_dims, f_int=max(levels[i] // 2, 1), f_g=levels[i], f_l=levels[i])
            if attention
            else nn.Identity()
            for i in range(len(levels) - 1)
        )
        self.decoder = nn.ModuleList(stage(2 * levels[i], levels[i], 1) for i in range(len(levels) - 1))
        self.head = Convolution(spatial_dims, levels[0], out_channels, kernel_size=1, conv_only=True)

    def forward_features(self, x: Tensor) -> Tensor:
        """Decoder features at full resolution (the input of ``head``)."""
        size = x.shape[2:]
        pad = [p for s, t in zip(reversed(size), reversed(self.total_stride)) for p in (0, (-s) % t)]
        x = F.pad(x, pad) if any(pad) else x
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(len(self.up))):
            x = self.up[i](x)
            skip = skips.pop()
            gated = self.gates[i](g=x, x=skip) if not isinstance(self.gates[i], nn.Identity) else skip
            x = self.decoder[i](torch.cat([gated, x], dim=1))
        x = self.final_up(x)
        return x[(..., *(slice(0, int(s)) for s in size))]  # type: ignore[index]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))


class UNet(EncoderDecoderUNet):
    """Plain UNet: double convolutions, no residual units, no attention gates.

    Arguments: those of :class:`EncoderDecoderUNet` but ``residual`` and ``attention``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, residual=False, attention=False, **kwargs)


class ResUNet(EncoderDecoderUNet):
    """Res-UNet: residual units at every stage.

    Arguments: those of :class:`EncoderDecoderUNet` but ``residual`` and ``attention``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, residual=True, attention=False, **kwargs)


class AttentionResUNet(EncoderDecoderUNet):
    """Attention Res-UNet: residual units and attention gates on the skip connections.

    Arguments: those of :class:`EncoderDecoderUNet` but ``residual`` and ``attention``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, residual=True, attention=True, **kwargs)
