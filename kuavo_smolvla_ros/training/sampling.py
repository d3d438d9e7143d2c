"""Held-out episode splits and the replay sampler that mixes the tasks seen so far in every batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def split_episodes(num_episodes: int, held_out: float | Sequence[int], seed: int) -> tuple[list[int], list[int]]:
    """(training, validation) episode indices: the listed ones, or a seeded random ``held_out`` share
    (at least one when the share is positive and there are two or more episodes)."""
    if num_episodes < 1:
        raise ValueError("a dataset without episodes cannot be split")
    if isinstance(held_out, float | int) and not isinstance(held_out, bool):
        count = round(num_episodes * float(held_out))
        if held_out > 0 and num_episodes > 1:
            count = min(max(count, 1), num_episodes - 1)
        rng = np.random.default_rng(seed)
        validation = sorted(int(i) for i in rng.choice(num_episodes, size=count, replace=False))
    else:
        validation = sorted(set(int(i) for i in held_out))
        bad = [i for i in validation if not 0 <= i < num_episodes]
        if bad:
            raise ValueError(f"validation episodes {bad} do not exist (the dataset has {num_episodes})")
        if len(validation) == num_episodes:
            raise ValueError("every episode is held out: nothing left to train on")
    training = [i for i in range(num_episodes) if i not in set(validation)]
    return training, validation


class ReplaySampler(torch.utils.data.Sampler[int]):
    """Indices into a ``ConcatDataset`` of per-task datasets: each sample's task is drawn by ``weights``,
    then a frame uniformly within that task. An epoch is ``num_samples`` draws (by default one pass
    over the current task, the last dataset). Deterministic per (``seed``, epoch): set the epoch with
    :meth:`set_epoch` so a resumed run draws the same samples.
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], seed: int, num_samples: int | None = None):
        if len(sizes) != len(weights) or not sizes:
            raise ValueError("one weight per dataset is needed")
        if any(s < 1 for s in sizes):
            raise ValueError(f"every dataset needs frames, got sizes {list(sizes)}")
        total = float(sum(weights))
        if total <= 0 or any(w < 0 for w in weights):
            raise ValueError(f"weights must be >= 0 and not all 0, got {list(weights)}")
        self.sizes = list(sizes)
        self.weights = torch.tensor([w / total for w in weights], dtype=torch.float64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).tolist()
        self.seed = seed
        self.num_samples = num_samples or self.sizes[-1]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        tasks = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)
        uniform = torch.rand(self.num_samples, generator=generator, dtype=torch.float64)
        for task, u in zip(tasks.tolist(), uniform.tolist(), strict=True):
            yield self.offsets[task] + min(int(u * self.sizes[task]), self.sizes[task] - 1)
