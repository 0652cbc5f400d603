"""LightningModules ("tasks"): each wraps a plain network and owns losses, metrics, inference and logging."""

from medlight.tasks.segmentation import SegmentationTask

__all__ = ["SegmentationTask"]
from medlight.tasks.instance import InstanceSegmentationTask, Watershed  # noqa: E402

__all__ += ["InstanceSegmentationTask", "Watershed"]
