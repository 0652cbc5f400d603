"""Data pipeline: training samples/s cached vs uncached, .nii vs .nii.gz; peak memory per rank, 1 vs 2 DDP ranks.

Throughput: the training loader of the hippocampus data module (3D patches 32x48x32, batch 4, flips and
intensity augmentation, main process), iterated for a fixed number of batches after one warm-up batch;
median of several repeats. Caching time (building the MONAI CacheDataset) is reported separately.

Memory: ``medlight fit`` for a few steps with 1 process and with 2 DDP processes (gloo, CPU), each process
reporting its peak resident memory; each DDP rank caches only its own half of the training cases.

    python experiments/perf/data_pipeline.py --batches 40 --repeats 3
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import header, median, table  # noqa: E402

from medlight.data import Augmentation, SegmentationDataModule  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HIPPO = REPO / "data" / "hippocampus"


def uncompressed_copy(target: Path) -> Path:
    """The hippocampus dataset with every .nii.gz decompressed to .nii (dataset.json rewritten)."""
    for sub in ("imagesTr", "labelsTr"):
        (target / sub).mkdir(parents=True)
        for f in (HIPPO / sub).glob("*.nii.gz"):
            with gzip.open(f) as src, open(target / sub / f.name[:-3], "wb") as dst:
                shutil.copyfileobj(src, dst)
    spec = json.loads((HIPPO / "dataset.json").read_text())
    for entry in spec["training"]:
        entry["image"], entry["label"] = entry["image"][:-3], entry["label"][:-3]
    (target / "dataset.json").write_text(json.dumps(spec))
    shutil.copy(HIPPO / "splits.json", target / "splits.json")
    return target


def throughput(dataset: Path, cache: str, batches: int, repeats: int) -> dict:
    dm = SegmentationDataModule(
        str(dataset),
        split_file=str(dataset / "splits.json"),
        cache=cache,
        batch_size=4,
        augmentation=Augmentation(flip_prob=0.5, intensity_prob=0.5, noise_prob=0.0),
    )
    start = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - start
    rates = []
    for _ in range(repeats):
        it = iter(dm.train_dataloader())
        next(it)
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        rates.append(batches * 4 / (time.perf_counter() - start))
    return {"setup_s": setup_s, "samples_per_s": median(rates)}


def peak_memory(devices: int, run_dir: Path) -> list[float]:
    args = [
        sys.executable,
        "-m",
        "medlight",
        "fit",
        "--config",
        "configs/data/hippocampus_3d.yaml",
        "--config",
        "configs/model/res_unet_3d.yaml",
        "--config",
        "configs/trainer/cpu.yaml",
        "--trainer.max_steps",
        "5",
        "--trainer.limit_val_batches",
        "0",
        "--test_after_fit",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--tracking.wandb",
        "disabled",
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.devices",
        str(devices),
        "--trainer.callbacks+=peak_memory.PeakMemory",
    ]
    if devices > 1:
        args += ["--trainer.strategy", "ddp"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return [json.loads((run_dir / f"peak_memory_rank{r}.json").read_text())["peak_rss_mib"] for r in range(devices)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        nii = uncompressed_copy(Path(tmp) / "nii")
        rows = []
        for fmt, dataset in ((".nii.gz", HIPPO), (".nii", nii)):
            for cache in ("memory", "none"):
                rows.append({"files": fmt, "cache": cache, **throughput(dataset, cache, args.batches, args.repeats)})
        memory = {n: peak_memory(n, Path(tmp) / f"ddp{n}") for n in (1, 2)}
    print(header("Training data pipeline, hippocampus 3D patches 32x48x32, batch 4, main process"))
    print(table(rows, ["files", "cache", "setup_s", "samples_per_s"]))
    print(f"\n(median of {args.repeats} repeats of {args.batches} batches; setup_s: integrity check, split, cache)\n")
    mem_rows = [{"processes": n, "rank": r, "peak_rss_mib": m} for n, ms in memory.items() for r, m in enumerate(ms)]
    print(table(mem_rows, ["processes", "rank", "peak_rss_mib"]))
    print("\n(`medlight fit`, 5 steps, memory cache; every DDP rank caches only its share of the training cases)")


if __name__ == "__main__":
    main()
