"""A segmentation task whose prediction is the mean of several networks' softmax probabilities (a fold ensemble)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from medlight.ops.inference import build_inferer, predict_probabilities
from medlight.tasks.segmentation import SegmentationTask


class EnsembleTask(SegmentationTask):
    """Test (or predict) with the mean of the members' probabilities, each by the task's sliding-window inference
    (:func:`medlight.ops.inference.predict_probabilities`, with its mirroring); nothing is trained.

    Args:
        nets: the member networks (e.g. one per fold), with their trained weights.
        **kwargs: :class:`SegmentationTask` settings (inference, post-processing, NSD tolerance) shared by all.
    """

    checkpoint_monitor = None  # type: ignore[assignment]  # nothing is trained, nothing selected

    def __init__(self, nets: list[nn.Module], **kwargs: Any) -> None:
        super().__init__(net=nets[0], **kwargs)
        self.members = nn.ModuleList(nets)

    def predict_volume(self, image: Tensor) -> Tensor:
        assert self.spec is not None
        inferer = build_inferer(self.spec.patch_size, self.inference, self.spec.slice_axis)
        probs = [predict_probabilities(net.eval(), image, inferer, self.inference.mirror_axes) for net in self.members]
        return torch.stack(probs).mean(0)
