"""Lightning callbacks of medlight."""

from medlight.callbacks.manifest import RunManifest
from medlight.callbacks.timing import RunTiming

__all__ = ["RunManifest", "RunTiming"]
