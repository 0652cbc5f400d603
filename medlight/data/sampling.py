"""Reproducible, resumable sampling of training items.

The sampler yields ``(index, seed)`` pairs: the order is a seeded permutation per epoch, and every draw
carries its own augmentation seed derived from (seed, rank, epoch, position). The dataset wrapper seeds its
random transforms with it. So the sequence of batches, augmentation included, depends on neither the
number of loader workers nor on interruptions: a resumed run skips the draws it has already trained on
and continues with exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose
from torch.utils.data import Dataset, DistributedSampler


def draw_seed(*entropy: int) -> int:
    """A 31-bit seed from integers, well mixed (numpy's SeedSequence)."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0] & 0x7FFFFFFF)


class EpochSampler(DistributedSampler):
    """Seeded per-epoch permutation of this rank's items, yielding ``(index, augmentation_seed)``.

    It subclasses DistributedSampler only so that Lightning leaves it in place under DDP: the data module
    already hands each rank its own share of the cases (and caches only that share).

    Args:
        data: the rank's dataset (only its length is used).
        seed: base seed of order and augmentation.
        rank: process rank, mixed into the augmentation seeds.
        shuffle: permute each epoch (else sequential order).
        weights: per-item draw weights: each epoch then draws ``len(data)`` items with replacement in
            proportion to them (e.g. inverse class frequencies for class-balanced batches), seeded as the order.
    """

    def __init__(
        self,
        data: Dataset,
        seed: int = 0,
        rank: int = 0,
        shuffle: bool = True,
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__(data, num_replicas=1, rank=0, shuffle=shuffle, seed=seed, drop_last=False)
        self.process_rank = rank
        self._resume: tuple[int, int] | None = None
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        if self.weights is not None and (len(self.weights) != len(data) or not bool((self.weights >= 0).all())):  # type: ignore[arg-type]
            raise ValueError("EpochSampler weights need one non-negative weight per item")

    def resume_at(self, epoch: int, draws: int) -> None:
        """When iterating epoch ``epoch``, skip its first ``draws`` items (they were trained before)."""
        self._resume = (epoch, draws)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        n = len(self.dataset)  # type: ignore[arg-type]
        generator = torch.Generator().manual_seed(draw_seed(self.seed, self.epoch))
        if self.weights is not None:
            order = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        elif self.shuffle:
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        start = 0
        if self._resume is not None and self._resume[0] <= self.epoch:
            start = self._resume[1] if self._resume[0] == self.epoch else 0
            self._resume = None
        for position in range(start, n):
            yield int(order[position]), draw_seed(self.seed, self.process_rank, self.epoch, position)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]


class SeededAugmentDataset(Dataset):
    """Apply random transforms to items of ``base``, seeded by the key the sampler yields.

    Args:
        base: dataset of preprocessed (typically cached) items.
        transform: the random part of the pipeline.
    """

    def __init__(self, base: Dataset, transform: Compose) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        index, seed = key if isinstance(key, tuple) else (key, None)
        item = self.base[index]
        if seed is not None:
            self.transform.set_random_state(seed=seed)
        return self.transform(dict(item))  # shallow copy: the cached item must stay untouched
