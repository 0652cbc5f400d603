"""Datasets on disk -> checked, split, transformed, cached batches."""

from medlight.data.kspace_datamodule import KspaceDataModule
from medlight.data.segmentation import SegmentationDataModule, SegmentationSpec
from medlight.data.transforms import Augmentation, Preprocessing

__all__ = ["Augmentation", "Preprocessing", "SegmentationDataModule", "SegmentationSpec"]
__all__ += ["KspaceDataModule"]
