"""Per-sample random seeds: a sample's augmentation depends on (--seed, epoch, index) only.

Why: with one global random stream, what augmentation a sample gets depends on which
worker process loads it and how many samples that worker loaded before. A resumed run
(or one with another --num_workers) would then see different pictures. Here the sampler
hands out `(index, seed)` pairs and `SeededDataset` seeds python's and torch's random
generators with that seed just before reading the sample, so a run killed at any step
and resumed sees exactly the batches of an uninterrupted one.
"""

import random

import torch
from torch.utils.data import Dataset, DistributedSampler, get_worker_info

from data.views import DatasetView


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A distinct seed for every (run seed, epoch, sample index) triple."""
    return (seed * 1_000_003**2 + epoch * 1_000_003 + index) % 2**63


class SeededSampler(DistributedSampler):
    """A DistributedSampler (shuffled by (seed, epoch); in one process, a single replica)
    that yields `(index, seed)` pairs, can skip the batches a resumed run already saw, and
    can stop after `limit` samples an epoch (--limit_train_batches)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True,
                 limit: int | None = None, weights: torch.Tensor | None = None) -> None:
        """`weights` (one per sample): draw each epoch's samples with replacement, each with
        its weight's share (--sampler balanced), instead of a shuffle of them all."""
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.limit = limit
        self.skip = 0
        self.weights = weights

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's order; leave out its first `skip` samples (already trained on)."""
        super().set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        indices = list(super().__iter__() if self.weights is None else self.weighted_order())[:self.limit][self.skip:]
        return iter([(index, sample_seed(self.seed, self.epoch, index)) for index in indices])

    def weighted_order(self) -> list[int]:
        """This process's share of the epoch's weighted draw: the same draw on every process
        (seeded by --seed and the epoch), split as DistributedSampler splits a shuffle."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.total_size, replacement=True, generator=generator).tolist()
        return drawn[self.rank:self.total_size:self.num_replicas]

    def __len__(self) -> int:
        per_epoch = super().__len__() if self.limit is None else min(super().__len__(), self.limit)
        return max(0, per_epoch - self.skip)


def seed_generators(seed: int) -> None:
    """Seed python's and torch's CPU generator (what transforms draw from); CUDA's is left to
    the model."""
    random.seed(seed)
    torch.default_generator.manual_seed(seed)


class SeededDataset(DatasetView):
    """Reads `dataset[index]` for an `(index, seed)` pair with the random generators seeded.

    In the main process (--num_workers 0) the training's own random state is put back
    afterwards, so loading does not change what the model's dropout draws.
    """

    def weighted_order(self) -> list[int]:
        """This process's share of the epoch's weighted draw: the same draw on every process
        (seeded by --seed and the epoch), split as DistributedSampler splits a shuffle."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.total_size, replacement=True, generator=generator).tolist()
        return drawn[self.rank:self.total_size:self.num_replicas]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[dict]:
        """A batch: read at once, unseeded, where reading draws nothing random (an in-memory set
        with no augmentation); else sample by sample, each with its seed."""
        if self.reads_batches:
            return self.dataset.__getitems__([index for index, _ in keys])
        return [self[key] for key in keys]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        if get_worker_info() is not None:  # a worker process: its generators serve only the data
            seed_generators(seed)
            return self.dataset[index]
        torch_state, python_state = torch.default_generator.get_state(), random.getstate()
        seed_generators(seed)
        try:
            return self.dataset[index]
        finally:  # the main process (--num_workers 0): give the training its generators back
            torch.default_generator.set_state(torch_state)
            random.setstate(python_state)
