"""A callback that records each process's peak resident memory (used by data_pipeline.py)."""

from __future__ import annotations

import json
import resource
from pathlib import Path

from lightning.pytorch import Callback


class PeakMemory(Callback):
    """Write ``peak_memory_rank<r>.json`` (peak RSS in MiB) into the run folder when training ends."""

    def on_train_end(self, trainer, pl_module) -> None:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
        path = Path(trainer.default_root_dir) / f"peak_memory_rank{trainer.global_rank}.json"
        path.write_text(
            json.dumps({"rank": trainer.global_rank, "world_size": trainer.world_size, "peak_rss_mib": peak_mib})
        )
