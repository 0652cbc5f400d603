"""Losses MONAI and torchmetrics lack, and thin compositions of theirs."""

from medlight.losses.reconstruction import MSSSIML1Loss

__all__ = ["MSSSIML1Loss"]
