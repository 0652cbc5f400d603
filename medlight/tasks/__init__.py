"""LightningModules ("tasks"): each wraps a plain network and owns losses, metrics, inference and logging."""

from medlight.tasks.reconstruction import ReconstructionTask
from medlight.tasks.segmentation import SegmentationTask

__all__ = ["SegmentationTask"]
__all__ += ["ReconstructionTask"]
