"""Classification data: 2D images (CSV or class folders) and slices of 3D volumes, split patient-wise."""

from medlight.data.classification.datamodule import ClassificationDataModule, SliceAugmentation
from medlight.data.classification.slices import VolumeSlices

__all__ = ["ClassificationDataModule", "SliceAugmentation", "VolumeSlices"]
