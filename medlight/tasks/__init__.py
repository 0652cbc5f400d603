"""LightningModules ("tasks"): each wraps a plain network and owns losses, metrics, inference and logging."""

from medlight.tasks.classification import ABNClassificationTask
from medlight.tasks.instance import InstanceSegmentationTask, Watershed
from medlight.tasks.optim import PolyLR
from medlight.tasks.reconstruction import ReconstructionTask
from medlight.tasks.segmentation import SegmentationTask
from medlight.tasks.semi_supervised import TeacherStudentTask

__all__ = [
    "ABNClassificationTask",
    "InstanceSegmentationTask",
    "PolyLR",
    "ReconstructionTask",
    "SegmentationTask",
    "TeacherStudentTask",
    "Watershed",
]
