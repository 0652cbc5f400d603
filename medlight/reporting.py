"""Plain outputs of a run: CSV tables and the short summary printed at the end of a test."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from medlight.metrics.segmentation import METRICS


def write_table(rows: Sequence[dict], path: Path) -> None:
    """Write dict rows as CSV (columns from the first row), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["case_id"])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def print_summary(stage: str, summary: dict[str, float], class_names: Sequence[str], cases: int, out: Path) -> None:
    """Print mean +- std of every metric per class, e.g. after the main job's test."""
    width = max(len(n) for n in [*class_names, "mean"]) + 2
    header = "".join(f"{(m + ' (mm)' if m == 'hd95' else m):>17s}" for m in METRICS)
    lines = [f"\n{stage}: {cases} held-out case(s); per-case tables in {out}", f"{'class':{width}s}{header}"]
    for name in [*class_names, None]:
        keys = [f"{m}_{name}" if name else m for m in METRICS]
        cells = "".join(f"{summary[k]:>10.3f} ± {summary.get(k + '_std', float('nan')):<5.3f}" for k in keys)
        lines.append(f"{(name or 'mean'):{width}s}{cells}")
    print("\n".join(lines), flush=True)
