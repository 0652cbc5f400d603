import pytest
import torch
from monai.transforms import Compose, RandGaussianNoised
from torch.utils.data import DataLoader

from medlight.data.sampling import EpochSampler, SeededAugmentDataset


class Items(torch.utils.data.Dataset):
    """Like a CacheDataset: returns the same stored objects every time."""

    def __init__(self) -> None:
        self.cache = [{"image": torch.zeros(1, 4, 4), "index": i} for i in range(10)]

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> dict:
        return self.cache[i]


def test_order_is_a_seeded_permutation_per_epoch() -> None:
    sampler = EpochSampler(Items(), seed=1)
    first = [i for i, _ in sampler]
    assert sorted(first) == list(range(10))
    assert [i for i, _ in EpochSampler(Items(), seed=1)] == first
    sampler.set_epoch(1)
    assert [i for i, _ in sampler] != first
    assert [i for i, _ in EpochSampler(Items(), seed=2)] != first


def test_resume_skips_the_trained_part_of_its_epoch_only() -> None:
    sampler = EpochSampler(Items(), seed=0)
    sampler.set_epoch(2)
    full = list(sampler)
    resumed = EpochSampler(Items(), seed=0)
    resumed.resume_at(2, 4)
    resumed.set_epoch(2)
    assert list(resumed) == full[4:]
    assert list(resumed) == full  # the skip applies to one iteration only
    late = EpochSampler(Items(), seed=0)
    late.resume_at(1, 4)  # resuming in epoch 1 but Lightning already moved on to epoch 2
    late.set_epoch(2)
    assert list(late) == full


def test_ranks_get_different_augmentation_seeds() -> None:
    a = [s for _, s in EpochSampler(Items(), seed=0, rank=0)]
    b = [s for _, s in EpochSampler(Items(), seed=0, rank=1)]
    assert a != b


def batches(num_workers: int) -> list[torch.Tensor]:
    data = SeededAugmentDataset(Items(), Compose([RandGaussianNoised("image", prob=1.0, std=1.0)]))
    loader = DataLoader(data, batch_size=3, sampler=EpochSampler(data, seed=5), num_workers=num_workers)
    return [b["image"] for b in loader]


def test_augmentation_does_not_depend_on_worker_count() -> None:
    single, multi = batches(0), batches(2)
    assert len(single) == 4
    for x, y in zip(single, multi):
        assert torch.equal(x, y)
    assert not torch.equal(single[0][0], single[0][1])  # but every draw differs


def test_cached_items_stay_untouched() -> None:
    base = Items()
    data = SeededAugmentDataset(base, Compose([RandGaussianNoised("image", prob=1.0, std=1.0)]))
    out = data[(0, 123)]
    assert not torch.equal(out["image"], torch.zeros(1, 4, 4))
    assert torch.equal(base[0]["image"], torch.zeros(1, 4, 4)) and set(base[0]) == {"image", "index"}


def test_weighted_epochs_draw_in_proportion_and_stay_seeded() -> None:
    weights = [1.0] * 9 + [9.0]  # item 9 as likely as the nine others together
    sampler = EpochSampler(Items(), seed=3, weights=weights)
    draws = []
    for epoch in range(200):
        sampler.set_epoch(epoch)
        draws += [i for i, _ in sampler]
    assert len(draws) == 2000
    assert abs(draws.count(9) / len(draws) - 0.5) < 0.05
    sampler.set_epoch(7)
    again = EpochSampler(Items(), seed=3, weights=weights)
    again.set_epoch(7)
    assert list(again) == list(sampler)
    again.resume_at(7, 3)
    assert list(again) == list(sampler)[3:]


def test_class_balancing_weights_give_each_class_an_equal_share() -> None:
    from medlight.data.classification.datamodule import class_balancing_weights

    weights = class_balancing_weights([{"label": 0}] * 8 + [{"label": 1}] * 2)
    assert sum(weights[:8]) == pytest.approx(sum(weights[8:])) == pytest.approx(1.0)
