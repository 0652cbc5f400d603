"""What a run leaves on disk, and who writes it: the run folder's layout, the one atomic writer, checkpoints,
loggers and dashboards, the manifest, the timing callback and progress lines."""

from medlight.runs.checkpointing import AtomicCheckpointIO
from medlight.runs.layout import RunLayout, SummaryContributor, atomic_write, write_json, write_table, write_text
from medlight.runs.manifest import RunManifest
from medlight.runs.progress import ProgressLog
from medlight.runs.timing import RunTiming
from medlight.runs.tracking import Tracking, build_loggers

__all__ = [
    "AtomicCheckpointIO",
    "ProgressLog",
    "RunLayout",
    "RunManifest",
    "RunTiming",
    "SummaryContributor",
    "Tracking",
    "atomic_write",
    "build_loggers",
    "write_json",
    "write_table",
    "write_text",
]
