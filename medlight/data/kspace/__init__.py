"""Multi-coil k-space data: fastMRI-style HDF5 and CMRxRecon .mat files, or the multi-center simulator."""

from medlight.data.kspace.datamodule import KspaceDataModule

__all__ = ["KspaceDataModule"]
