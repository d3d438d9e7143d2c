"""Data-parallel training with torch's own engine (``torchrun``; DDP over gloo on CPU, NCCL on CUDA).

Every rank walks the same sequence of global batches and takes its contiguous slice; the flow-matching
noise and times of a global batch come from a generator keyed by the step, so N processes compute
exactly the samples, noise and mean loss that one process computes on the same global batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device: str) -> World:
    """Join the process group ``torchrun`` describes in the environment (a single process otherwise)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def close_world(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


class RankSlice(torch.utils.data.Sampler[list[int]]):
    """This rank's contiguous share of each global batch from ``batches`` (global size divisible by world)."""

    def __init__(self, batches: torch.utils.data.BatchSampler, world: World):
        if batches.batch_size % world.size:
            raise ValueError(f"batch_size {batches.batch_size} is not divisible by the {world.size} processes")
        self.batches, self.world = batches, world
        self.share = batches.batch_size // world.size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            yield batch[self.world.rank * self.share:(self.world.rank + 1) * self.share]


def flow_noise(step: int, seed: int, global_size: int, share: int, chunk: int, dim: int, rank: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise, time) for rank ``rank``'s ``share`` samples of global batch ``step`` (``global_size`` samples):
    noise ~ N(0, 1) and time ~ Beta(1.5, 1) (by inverting its CDF t^1.5) as SmolVLA samples them, but keyed
    by the step, so every process count draws the same values for the same sample."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    noise = torch.randn((global_size, chunk, dim), generator=generator)
    time = torch.rand(global_size, generator=generator) ** (2 / 3) * 0.999 + 0.001
    start = rank * share
    return noise[start:start + share], time[start:start + share]


def sum_over_ranks(value: torch.Tensor, world: World) -> torch.Tensor:
    """The sum of ``value`` over every process (``value`` itself in a single process); no gradient."""
    if not world.distributed:
        return value.detach()
    import torch.distributed as dist

    value = value.detach().clone()
    dist.all_reduce(value)
    return value
