"""SegFormer (Xie et al. 2021), B0-sized by default, 2D (3D works the same way, with 3D convolutions).

Encoder (Mix Transformer): four stages, each an overlapping patch embedding (a strided convolution: 7x7
stride 4, then 3x3 stride 2) followed by transformer blocks whose self-attention reads keys and values
from a spatially reduced map (a strided convolution with ratio ``sr_ratios``: efficient attention) and
whose feed-forward layer has a 3x3 depthwise convolution (Mix-FFN: position information without position
embeddings, so any input size works). Decoder (all-MLP): each stage is projected to ``decoder_dim``,
upsampled to 1/4, concatenated, fused by a linear layer, classified, and the logits are interpolated to the
input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from monai.networks.layers.factories import Conv
from torch import Tensor, nn

from medlight.nets.common import load_pretrained, resize_to


def _tokens(x: Tensor) -> Tensor:
    """(B, C, *spatial) -> (B, N, C)."""
    return x.flatten(2).transpose(1, 2)


def _grid(x: Tensor, size: Sequence[int]) -> Tensor:
    """(B, N, C) -> (B, C, *size)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *size)


class EfficientAttention(nn.Module):
    """Multi-head self-attention with keys/values from a map reduced ``sr_ratio`` times per axis."""

    def __init__(self, spatial_dims: int, dim: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.reduce = Conv["conv", spatial_dims](dim, dim, sr_ratio, stride=sr_ratio) if sr_ratio > 1 else None
        self.norm = nn.LayerNorm(dim) if sr_ratio > 1 else nn.Identity()

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        kv = x
        if self.reduce is not None and all(s >= self.reduce.stride[0] for s in size):
            kv = self.norm(_tokens(self.reduce(_grid(x, size))))
        return self.attn(x, kv, kv, need_weights=False)[0]


class MixFFN(nn.Module):
    """Linear -> 3x3 depthwise convolution -> GELU -> linear."""

    def __init__(self, spatial_dims: int, dim: int, ratio: int) -> None:
        super().__init__()
        hidden = dim * ratio
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dw = Conv["conv", spatial_dims](hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        return self.fc2(self.act(_tokens(self.dw(_grid(self.fc1(x), size)))))


class Block(nn.Module):
    """Pre-norm transformer block: efficient attention and Mix-FFN, each with a residual connection."""

    def __init__(self, spatial_dims: int, dim: int, heads: int, sr_ratio: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = EfficientAttention(spatial_dims, dim, heads, sr_ratio)
        self.ffn = MixFFN(spatial_dims, dim, mlp_ratio)

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        x = x + self.attn(self.norm1(x), size)
        return x + self.ffn(self.norm2(x), size)


class Stage(nn.Module):
    """Overlapping patch embedding, transformer blocks, layer norm; returns a (B, C, *spatial) map."""

    def __init__(self, spatial_dims: int, c_in: int, dim: int, patch: int, stride: int, depth: int, heads: int,
                 sr_ratio: int, mlp_ratio: int) -> None:  # fmt: skip
        super().__init__()
        self.embed = Conv["conv", spatial_dims](c_in, dim, patch, stride=stride, padding=patch // 2)
        self.embed_norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(Block(spatial_dims, dim, heads, sr_ratio, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)
        size = x.shape[2:]
        t = self.embed_norm(_tokens(x))
        for block in self.blocks:
            t = block(t, size)
        return _grid(self.norm(t), size)


class SegFormer(nn.Module):
    """SegFormer: hierarchical Mix Transformer encoder and all-MLP decoder (defaults: MiT-B0).

    Args:
        spatial_dims: 2 (or 3).
        in_channels: input channels.
        out_channels: classes, background included.
        dims: embedding width of the four stages (B0: 32, 64, 160, 256; B1: 64, 128, 320, 512).
        depths: transformer blocks per stage (B0 and B1: 2, 2, 2, 2).
        heads: attention heads per stage.
        sr_ratios: spatial reduction of keys/values per stage (skipped when a map is smaller).
        mlp_ratio: Mix-FFN expansion.
        decoder_dim: width of the all-MLP decoder (B0: 256).
        dropout: dropout before the classifier.
        pretrained: optional local file with weights (keys as in this module; ``head.*`` is not loaded).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        dims: Sequence[int] = (32, 64, 160, 256),
        depths: Sequence[int] = (2, 2, 2, 2),
        heads: Sequence[int] = (1, 2, 5, 8),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        mlp_ratio: int = 4,
        decoder_dim: int = 256,
        dropout: float = 0.1,
        pretrained: str | Path | None = None,
    ) -> None:
        super().__init__()
        if not len(dims) == len(depths) == len(heads) == len(sr_ratios):
            raise ValueError("dims, depths, heads and sr_ratios need one value per stage")
        c_in = [in_channels, *dims[:-1]]
        self.stages = nn.ModuleList(
            Stage(spatial_dims, c, d, 7 if i == 0 else 3, 4 if i == 0 else 2, n, h, r, mlp_ratio)
            for i, (c, d, n, h, r) in enumerate(zip(c_in, dims, depths, heads, sr_ratios))
        )
        conv1 = Conv["conv", spatial_dims]
        self.project = nn.ModuleList(conv1(d, decoder_dim, 1) for d in dims)  # per-pixel linear layers
        norm = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        self.fuse = nn.Sequential(conv1(decoder_dim * len(dims), decoder_dim, 1, bias=False), norm(decoder_dim),
                                  nn.ReLU(inplace=True), nn.Dropout(dropout))  # fmt: skip
        self.head = conv1(decoder_dim, out_channels, 1)
        load_pretrained(self, pretrained, ignore=("head.",))

    def forward(self, x: Tensor) -> Tensor:
        features: list[Tensor] = []
        for stage in self.stages:
            x_in = features[-1] if features else x
            features.append(stage(x_in))
        size = features[0].shape[2:]
        mixed = torch.cat([resize_to(p(f), size) for p, f in zip(self.project, features)], dim=1)
        return resize_to(self.head(self.fuse(mixed)), x.shape[2:])
