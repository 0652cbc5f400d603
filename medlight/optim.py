"""Old home of :class:`PolyLR`, kept so that configs naming ``medlight.optim.PolyLR`` still load."""

from medlight.tasks.optim import PolyLR

__all__ = ["PolyLR"]
