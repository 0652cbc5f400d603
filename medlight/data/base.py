"""Mechanics every medlight data module shares: rank shares, caching, resumable training loaders."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import LightningDataModule
from lightning.pytorch.trainer.states import TrainerFn
from monai.data import CacheDataset, PersistentDataset, list_data_collate, partition_dataset
from monai.data import Dataset as MonaiDataset
from monai.transforms import Compose
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from medlight.data.sampling import EpochSampler, SeededAugmentDataset
from medlight.errors import ConfigError

log = logging.getLogger(__name__)
CacheMode = Literal["memory", "disk", "none"]


class MedlightDataModule(LightningDataModule):
    """Base data module.

    Under DDP each rank takes its own share of the cases *before* caching, so a rank caches only what it
    trains or evaluates on. Training shares are padded to equal length (every rank runs the same number of
    steps); evaluation shares are not, so every evaluation case is scored exactly once.

    Args:
        batch_size: training items per batch.
        num_workers: loader worker processes.
        seed: seed of sampling order and augmentation.
        cache: ``memory`` (MONAI CacheDataset), ``disk`` (PersistentDataset under ``cache_dir``) or ``none``.
        cache_dir: folder for the disk cache.
    """

    def __init__(self, batch_size: int, num_workers: int, seed: int, cache: CacheMode, cache_dir: str | None) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.cache = cache
        self.cache_dir = cache_dir
        self._resume: dict[str, int] = {}

    # -- distributed context ------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    @property
    def world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def train_share(self, items: Sequence[dict]) -> list[dict]:
        """This rank's training items: a seeded partition padded to equal length across ranks."""
        if self.world_size == 1:
            return list(items)
        parts = partition_dataset(
            list(items), num_partitions=self.world_size, shuffle=True, seed=self.seed, even_divisible=True
        )
        return parts[self.rank]

    def eval_share(self, items: Sequence[dict], stage: str = "evaluation") -> list[dict]:
        """This rank's evaluation items: disjoint, unpadded, so each case is scored once overall.

        Raises:
            ConfigError: fewer cases than processes; a process without a case would leave Lightning's
                collective calls waiting or failing deep inside (seen with a 1-volume test set under DDP).
        """
        if 0 < len(items) < self.world_size:
            raise ConfigError(
                f"{len(items)} {stage} case(s) for {self.world_size} processes: each process needs at least one; "
                f"run with at most {len(items)} devices (--trainer.devices) or give the {stage} split more cases"
            )
        return list(items)[self.rank :: self.world_size]

    # -- datasets and loaders ------------------------------------------------------------------------
    def cached(self, items: Sequence[dict], transform: Compose, name: str) -> Dataset:
        """A dataset of ``items`` whose deterministic ``transform`` output is cached as configured."""
        if self.cache == "memory":
            return CacheDataset(list(items), transform, num_workers=max(1, self.num_workers), progress=True)
        if self.cache == "disk":
            if not self.cache_dir:
                raise ValueError("cache='disk' needs cache_dir")
            return PersistentDataset(list(items), transform, cache_dir=Path(self.cache_dir) / name)
        return MonaiDataset(list(items), transform)

    def train_loader(
        self,
        base: Dataset,
        random_transform: Compose,
        batch_size: int | None = None,
        collate_fn: Callable = list_data_collate,
        weights: Sequence[float] | None = None,
    ) -> DataLoader:
        """Training loader: seeded per-epoch order and per-draw augmentation seeds, resumable mid-epoch;
        ``weights``: draw items in proportion to them (see :class:`EpochSampler`)."""
        batch_size = batch_size or self.batch_size
        sampler = EpochSampler(base, seed=self.seed, rank=self.rank, weights=weights)
        if self._resume.get("batches_per_epoch"):
            epoch, done = divmod(self._resume["batches_total"], self._resume["batches_per_epoch"])
            sampler.resume_at(epoch, done * batch_size)
            log.info("resuming the training loader after %d batches of epoch %d", done, epoch)
        self._resume = {}
        return DataLoader(
            SeededAugmentDataset(base, random_transform),
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_fn,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def eval_loader(self, data: Dataset, collate_fn: Callable = list_data_collate) -> DataLoader:
        """One case per batch, in order; a DistributedSampler of one replica so Lightning never re-shards it."""
        sampler: DistributedSampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=False)
        return DataLoader(data, batch_size=1, sampler=sampler, num_workers=self.num_workers, collate_fn=collate_fn)

    # -- what the run manifest records -------------------------------------------------------------------
    def run_facts(self) -> dict[str, Any]:
        """Seeds, fold and split file (with its hash) of this data module, for the run manifest."""
        splits = getattr(self, "splits", None)
        return {
            "data_seed": self.seed,
            "split_seed": getattr(self, "split_seed", None),
            "fold": getattr(self, "fold", None),
            "split_file": str(splits.path) if splits is not None else None,
            "split_sha256": splits.sha256 if splits is not None else None,
        }

    # -- resumption ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """How many training batches have been trained on, saved in every checkpoint.

        Counted in total rather than per epoch: at an epoch boundary Lightning's per-epoch counters and
        epoch number are updated at different moments, the total is not.
        """
        trainer = self.trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return {}
        total = trainer.fit_loop.epoch_loop.batch_progress.total.processed  # type: ignore[attr-defined]
        return {"batches_total": int(total), "batches_per_epoch": int(trainer.num_training_batches)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = dict(state_dict)
        # Lightning looks for this state on the DataLoader and warns that mid-epoch resuming is unreliable;
        # here the data module carries it, and the resume test proves the batches continue exactly.
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
