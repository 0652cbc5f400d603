"""Sliding-window inference (MONAI inferers), mirroring test-time augmentation and post-processing."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from monai.inferers import Inferer, SliceInferer, SlidingWindowInferer
from monai.networks.utils import one_hot
from monai.transforms import KeepLargestConnectedComponent, RemoveSmallObjects
from torch import Tensor, nn


@dataclass
class Inference:
    """How whole volumes are predicted.

    Attributes:
        overlap: overlap of neighbouring windows (0-1).
        sw_batch_size: windows per forward pass.
        blend: ``gaussian`` weights window centres more than borders; ``constant`` averages uniformly.
        mirror_axes: test-time augmentation: average the softmax over every combination of flips of these
            spatial axes (0-based); empty for none. (0, 1, 2) costs 8 forward passes per window.
    """

    overlap: float = 0.5
    sw_batch_size: int = 4
    blend: Literal["gaussian", "constant"] = "gaussian"
    mirror_axes: tuple[int, ...] = ()


@dataclass
class Postprocessing:
    """Optional clean-up of predicted label maps.

    Attributes:
        threshold: a voxel is foreground only if its highest foreground probability reaches this value
            (None: plain argmax).
        min_size: remove connected components smaller than this many voxels, per class (0: off).
        keep_largest: keep only the largest connected component of each class.
    """

    threshold: float | None = None
    min_size: int = 0
    keep_largest: bool = False


def build_inferer(roi_size: Sequence[int], config: Inference, slice_axis: int | None = None) -> Inferer:
    """MONAI sliding-window inferer; slice by slice with a 2D window when ``slice_axis`` is set."""
    roi = tuple(roi_size)
    if slice_axis is not None:
        return SliceInferer(
            spatial_dim=slice_axis,
            roi_size=roi,
            sw_batch_size=config.sw_batch_size,
            overlap=config.overlap,
            mode=config.blend,
        )
    return SlidingWindowInferer(roi, sw_batch_size=config.sw_batch_size, overlap=config.overlap, mode=config.blend)


def predict_probabilities(net: nn.Module, image: Tensor, inferer: Inferer, mirror_axes: Sequence[int] = ()) -> Tensor:
    """Softmax probabilities of ``net`` over a whole (B, C, *spatial) image, averaged over mirrorings."""
    flips = [list(combo) for k in range(len(mirror_axes) + 1) for combo in itertools.combinations(mirror_axes, k)]
    total: Tensor | None = None
    for axes in flips:
        dims = [a + 2 for a in axes]
        x = torch.flip(image, dims) if dims else image
        probs = torch.softmax(torch.as_tensor(inferer(x, net)), dim=1)
        probs = torch.flip(probs, dims) if dims else probs
        total = probs if total is None else total + probs
    assert total is not None
    return total / len(flips)


def to_labels(probs: Tensor, config: Postprocessing) -> Tensor:
    """(C, *spatial) probabilities -> (1, *spatial) label map, post-processed as configured."""
    labels = probs.argmax(0, keepdim=True)
    if config.threshold is not None:
        confident = probs[1:].max(0, keepdim=True).values >= config.threshold
        labels = labels * confident
    if config.min_size <= 0 and not config.keep_largest:
        return labels
    num_classes = probs.shape[0]
    onehot = one_hot(labels[None], num_classes)[0]
    if config.min_size > 0:
        onehot[1:] = torch.as_tensor(
            RemoveSmallObjects(min_size=config.min_size, independent_channels=True)(onehot[1:])
        )
    if config.keep_largest:
        onehot = torch.as_tensor(
            KeepLargestConnectedComponent(applied_labels=list(range(1, num_classes)), is_onehot=True, independent=True)(
                onehot
            )
        )
    onehot[0] = onehot[1:].sum(0) == 0
    return torch.as_tensor(onehot).argmax(0, keepdim=True)
