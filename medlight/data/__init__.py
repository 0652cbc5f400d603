"""Datasets on disk -> checked, split, transformed, cached batches."""

from medlight.data.segmentation import SegmentationDataModule, SegmentationSpec
from medlight.data.transforms import Augmentation, Preprocessing

__all__ = ["Augmentation", "Preprocessing", "SegmentationDataModule", "SegmentationSpec"]
from medlight.data.instance import InstanceDataModule  # noqa: E402

__all__ += ["InstanceDataModule"]
