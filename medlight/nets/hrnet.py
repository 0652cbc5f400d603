"""HRNet (Wang et al. 2020), 2D and 3D, small (W18-like): parallel resolutions with repeated fusion.

A stride-4 stem, then stages that each add one lower-resolution branch (twice the channels) while keeping
every existing branch. Inside a stage, each branch runs residual units at its own resolution and then every
branch receives the sum of all branches (strided 3x3 convolutions downwards, 1x1 convolution and
interpolation upwards): the "repeated multi-scale fusion". The segmentation head (HRNetV2) upsamples all
branches to 1/4, concatenates them, mixes with a 1x1 convolution and interpolates the logits to the input
size, so any input size works (strided convolutions round up).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.layers.factories import Act
from torch import Tensor, nn

from medlight.nets.common import load_pretrained, resize_to


class HRModule(nn.Module):
    """Residual units on every branch, then exchange between all branches.

    Args:
        spatial_dims: 2 or 3.
        widths: channels of each branch, highest resolution first (each branch is half the size of the last).
        blocks: residual units per branch.
        norm: MONAI normalisation name.
        act: MONAI activation name.
    """

    def __init__(self, spatial_dims: int, widths: Sequence[int], blocks: int, norm: str, act: str) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(ResidualUnit(spatial_dims, w, w, subunits=2, act=act, norm=norm) for _ in range(blocks)))
            for w in widths
        )
        self.fuse = nn.ModuleList(
            nn.ModuleList(self._exchange(spatial_dims, widths, j, i, norm, act) for j in range(len(widths)))
            for i in range(len(widths))
        )
        self.act = Act[act]()

    @staticmethod
    def _exchange(spatial_dims: int, widths: Sequence[int], src: int, dst: int, norm: str, act: str) -> nn.Module:
        if src == dst:
            return nn.Identity()
        if src > dst:  # lower resolution -> higher: 1x1 conv here, interpolation in forward
            return Convolution(spatial_dims, widths[src], widths[dst], kernel_size=1, norm=norm, act=None)
        steps = []  # higher -> lower: one strided 3x3 conv per halving, activation between them
        for k in range(dst - src):
            last = k == dst - src - 1
            steps.append(
                Convolution(
                    spatial_dims,
                    widths[src],
                    widths[dst] if last else widths[src],
                    strides=2,
                    norm=norm,
                    act=None if last else act,
                )
            )
        return nn.Sequential(*steps)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            assert isinstance(row, nn.ModuleList)
            parts = [resize_to(f(x), xs[i].shape[2:]) for f, x in zip(row, xs)]
            out.append(self.act(torch.stack(parts).sum(0)))
        return out


class HRNet(nn.Module):
    """High-resolution network for 2D or 3D segmentation (HRNetV2 head).

    The defaults are HRNet-W18-small-like (width 18, 4 branches, one module per stage, 2 units per
    branch); ``modules=(1, 4, 3)`` and ``blocks=4`` approach full W18.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: classes, background included.
        width: channels of the highest-resolution branch; branch k has ``width * 2**k``.
        num_branches: number of parallel resolutions (2-4); the lowest is 1/``4 * 2**(num_branches-1)``.
        stem_channels: channels of the stride-4 stem and of stage 1.
        blocks: residual units per branch in each module.
        modules: HR modules in stages 2, 3, 4 (one value per added branch).
        norm: MONAI normalisation name.
        act: MONAI activation name.
        pretrained: optional local file with weights (keys as in this module; ``head.*`` is not loaded).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        width: int = 18,
        num_branches: int = 4,
        stem_channels: int = 32,
        blocks: int = 2,
        modules: Sequence[int] = (1, 1, 1),
        norm: str = "batch",
        act: str = "relu",
        pretrained: str | Path | None = None,
    ) -> None:
        super().__init__()
        if not 2 <= num_branches <= 4 or len(modules) < num_branches - 1:
            raise ValueError(f"num_branches must be 2-4 with a modules count per stage, got {num_branches}, {modules}")
        widths = [width * 2**k for k in range(num_branches)]
        self.stem = nn.Sequential(
            Convolution(spatial_dims, in_channels, stem_channels, strides=2, norm=norm, act=act),
            Convolution(spatial_dims, stem_channels, stem_channels, strides=2, norm=norm, act=act),
            ResidualUnit(spatial_dims, stem_channels, stem_channels, subunits=2, act=act, norm=norm),
        )
        self.to_first = Convolution(spatial_dims, stem_channels, widths[0], norm=norm, act=act)
        # a new branch comes from the previous lowest branch by one strided conv
        self.transitions = nn.ModuleList(
            Convolution(spatial_dims, widths[k - 1], widths[k], strides=2, norm=norm, act=act)
            for k in range(1, num_branches)
        )
        self.stages = nn.ModuleList(
            nn.Sequential(*(HRModule(spatial_dims, widths[: k + 1], blocks, norm, act) for _ in range(modules[k - 1])))
            for k in range(1, num_branches)
        )
        self.mix = Convolution(spatial_dims, sum(widths), sum(widths), kernel_size=1, norm=norm, act=act)
        self.head = Convolution(spatial_dims, sum(widths), out_channels, kernel_size=1, conv_only=True)
        load_pretrained(self, pretrained, ignore=("head.",))

    def forward(self, x: Tensor) -> Tensor:
        xs = [self.to_first(self.stem(x))]
        for transition, stage in zip(self.transitions, self.stages):
            xs = list(stage([*xs, transition(xs[-1])]))
        features = torch.cat([resize_to(f, xs[0].shape[2:]) for f in xs], dim=1)
        return resize_to(self.head(self.mix(features)), x.shape[2:])
