"""Losses MONAI and torch lack, and thin compositions of theirs."""

from medlight.losses.abn import AttentionLossSchedule, abn_loss, map_loss

__all__ = ["AttentionLossSchedule", "abn_loss", "map_loss"]
