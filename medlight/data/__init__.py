"""Datasets on disk -> checked, split, transformed, cached batches.

Shared by every kind of work: ``datalist`` (find cases), ``integrity`` (check every file), ``problems``,
``splits``, ``sampling`` and ``base``. One sub-package per kind of work: ``segmentation``,
``classification``, ``instance``, ``kspace``.
"""

from medlight.contracts import SegmentationSpec
from medlight.data.classification import ClassificationDataModule, SliceAugmentation, VolumeSlices
from medlight.data.instance import InstanceDataModule
from medlight.data.kspace import KspaceDataModule
from medlight.data.segmentation import Augmentation, Preprocessing, SegmentationDataModule, SemiSupervisedDataModule

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
