"""Datasets on disk -> checked, split, transformed, cached batches."""

from medlight.data.segmentation import SegmentationDataModule, SegmentationSpec
from medlight.data.semi_supervised import SemiSupervisedDataModule
from medlight.data.transforms import Augmentation, Preprocessing

__all__ = ["Augmentation", "Preprocessing", "SegmentationDataModule", "SegmentationSpec", "SemiSupervisedDataModule"]
