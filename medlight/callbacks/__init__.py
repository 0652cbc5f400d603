"""Old home of the run callbacks, kept so that configs naming ``medlight.callbacks.RunTiming`` still load."""

from medlight.runs.manifest import RunManifest
from medlight.runs.timing import RunTiming

__all__ = ["RunManifest", "RunTiming"]
