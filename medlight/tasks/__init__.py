"""LightningModules ("tasks"): each wraps a plain network and owns losses, metrics, inference and logging."""

from medlight.tasks.classification import ABNClassificationTask
from medlight.tasks.segmentation import SegmentationTask

__all__ = ["ABNClassificationTask", "SegmentationTask"]
