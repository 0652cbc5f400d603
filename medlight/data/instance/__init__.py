"""Instance-segmentation data: 2D instance maps from folders, or derived from 3D label volumes."""

from medlight.data.instance.datamodule import InstanceDataModule

__all__ = ["InstanceDataModule"]
