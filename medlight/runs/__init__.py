"""The run folder and what writes into it: layout and atomic writers, checkpointing, loggers and dashboards,
manifest, timing."""

from medlight.runs.layout import RunLayout, SummaryContributor, atomic_write, write_json, write_table, write_text
from medlight.runs.timing import RunTiming

__all__ = ["RunLayout", "RunTiming", "SummaryContributor", "atomic_write", "write_json", "write_table", "write_text"]
