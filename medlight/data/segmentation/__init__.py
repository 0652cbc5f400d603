"""Segmentation data: volumes (3D patches or 2D slices) and 2D images, with or without a labeled subset."""

from medlight.data.segmentation.datamodule import SegmentationDataModule
from medlight.data.segmentation.semi_supervised import SemiSupervisedDataModule
from medlight.data.segmentation.transforms import Augmentation, Preprocessing

__all__ = ["Augmentation", "Preprocessing", "SegmentationDataModule", "SemiSupervisedDataModule"]
