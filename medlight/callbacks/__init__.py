"""Lightning callbacks of medlight."""

from medlight.callbacks.manifest import RunManifest

__all__ = ["RunManifest"]
