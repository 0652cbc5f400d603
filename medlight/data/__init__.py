"""Datasets on disk -> checked, split, transformed, cached batches."""

from medlight.data.classification import ClassificationDataModule, SliceAugmentation
from medlight.data.instance import InstanceDataModule
from medlight.data.kspace_datamodule import KspaceDataModule
from medlight.data.segmentation import SegmentationDataModule, SegmentationSpec
from medlight.data.semi_supervised import SemiSupervisedDataModule
from medlight.data.slices import VolumeSlices
from medlight.data.transforms import Augmentation, Preprocessing

__all__ = [
    "Augmentation",
    "ClassificationDataModule",
    "InstanceDataModule",
    "KspaceDataModule",
    "Preprocessing",
    "SegmentationDataModule",
    "SegmentationSpec",
    "SemiSupervisedDataModule",
    "SliceAugmentation",
    "VolumeSlices",
]
