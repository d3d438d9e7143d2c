"""Reflow pairs: a start noise and the teacher's action chunk integrated from it, per dataset observation.

The frozen teacher runs its own flow (its ``num_steps`` Euler steps, lerobot's ``sample_actions``) from
seeded noise; the chunk is kept in the model's normalised space, where the student trains. Pairs are saved
as safetensors under a key of everything they depend on (the teacher's weights file, its step count, the
dataset's files and episodes, the frames, the seed), so a later run with the same inputs reuses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kuavo_smolvla_ros.atomic import atomic_path
from kuavo_smolvla_ros.policy.checkpoint import WEIGHTS_FILE
from kuavo_smolvla_ros.training.memory import MemoryDataset, batch_loader

LOG = logging.getLogger(__name__)
FORMAT_VERSION = 1
NOISE_KEY = "reflow.noise"
TARGET_KEY = "reflow.target"


@dataclass
class Pairs:
    """``items[i]``: the dataset item of pair i; ``noise[i]``: its start noise (chunk, max_action_dim);
    ``actions[i]``: the teacher's chunk from that noise (chunk, action_dim), normalised."""

    items: torch.Tensor
    noise: torch.Tensor
    actions: torch.Tensor

    def __len__(self) -> int:
        return len(self.items)

    def save(self, path: Path, key: dict[str, Any]) -> None:
        """Write the pairs to ``path`` as safetensors (``key``, what they depend on, in its metadata), complete
        or not at all; creates the folder."""
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({"items": self.items, "noise": self.noise, "actions": self.actions}, str(tmp),
                      metadata={"format": str(FORMAT_VERSION), "key": json.dumps(key, sort_keys=True, default=str)})

    @classmethod
    def load(cls, path: Path) -> Pairs:
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        return cls(tensors["items"], tensors["noise"], tensors["actions"])

    @classmethod
    def concat(cls, parts: Sequence[Pairs], offsets: Sequence[int]) -> Pairs:
        """One set of the ``parts``, their items shifted by ``offsets`` (the datasets' starts in a concatenation)."""
        return cls(torch.cat([p.items + o for p, o in zip(parts, offsets, strict=True)]),
                   torch.cat([p.noise for p in parts]), torch.cat([p.actions for p in parts]))


class PairedDataset(torch.utils.data.Dataset):
    """Pair ``i`` as a training item: its observation (``data[pairs.items[i]]``) plus the pair's noise and
    teacher chunk under :data:`NOISE_KEY` / :data:`TARGET_KEY`. A list index gathers a whole batch when
    ``data`` can (an in-memory dataset)."""

    def __init__(self, data, pairs: Pairs):
        self.data, self.pairs = data, pairs
        self.gathers_batches = isinstance(data, MemoryDataset)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index):
        if isinstance(index, torch.Tensor):
            index = index.tolist()
        items = self.pairs.items[index]
        observation = self.data[items.tolist() if isinstance(index, list) else int(items)]
        return {**observation, NOISE_KEY: self.pairs.noise[index], TARGET_KEY: self.pairs.actions[index]}


def sample_chunks(policy, processed: dict, noise: torch.Tensor) -> torch.Tensor:
    """``policy``'s action chunks for a preprocessed batch from ``noise`` (B, chunk, max_action_dim), with its
    current ``num_steps``: lerobot's ``predict_action_chunk`` without the observation queues, still normalised,
    trimmed to the action dimensions."""
    from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

    images, masks = policy.prepare_images(processed)
    state = policy.prepare_state(processed)
    actions = policy.model.sample_actions(images, masks, processed[OBS_LANGUAGE_TOKENS],
                                          processed[OBS_LANGUAGE_ATTENTION_MASK], state, noise=noise)
    return actions[:, :, : policy.config.action_feature.shape[0]]


def evenly_spaced(length: int, limit: int | None) -> list[int]:
    """``range(length)``, or ``limit`` indices spread evenly over it."""
    if limit is None or limit >= length:
        return list(range(length))
    return sorted({int(i) for i in np.linspace(0, length - 1, limit).round()})


def teacher_identity(checkpoint: Path, num_steps: int) -> dict[str, Any]:
    """What a teacher's pairs depend on: its weights file (path, size, modification time) and step count."""
    weights = Path(checkpoint) / WEIGHTS_FILE
    stat = weights.stat()
    return {"weights": str(weights.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "num_steps": int(num_steps)}


def pairs_path(cache_dir: Path, name: str, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True, default=str).encode())
    return Path(cache_dir) / f"{name}_{digest.hexdigest()[:24]}.safetensors"


def make_pairs(teacher, preprocessor, dataset, frames: Sequence[int], per_observation: int, seed: int,
               batch_size: int, device: str, num_workers: int = 0, autocast=None, desc: str = "pairs") -> Pairs:
    """Integrate ``teacher`` from seeded noise for each of ``frames`` (``per_observation`` noises each)."""
    from tqdm import tqdm

    config = teacher.config
    items = torch.as_tensor(np.repeat(np.asarray(frames, dtype=np.int64), per_observation))
    batches = [items[i:i + batch_size].tolist() for i in range(0, len(items), batch_size)]
    noises, actions = [], []
    teacher.eval()
    for number, batch in enumerate(tqdm(batch_loader(dataset, batches, num_workers), total=len(batches),
                                        desc=desc, leave=False, disable=None)):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + number)
        noise = torch.randn((len(batches[number]), config.chunk_size, config.max_action_dim), generator=generator)
        with torch.inference_mode(), autocast or nullcontext():
            chunks = sample_chunks(teacher, preprocessor(batch), noise.to(device))
        noises.append(noise)
        actions.append(chunks.float().cpu())
    return Pairs(items, torch.cat(noises), torch.cat(actions))


def cached_pairs(cache_dir: Path, name: str, key: dict[str, Any], make: Callable[[], Pairs]) -> Pairs:
    """The pairs saved under ``key`` in ``cache_dir``, else ``make()``'s, saved there."""
    path = pairs_path(cache_dir, name, key)
    if path.is_file():
        try:
            pairs = Pairs.load(path)
            LOG.info("reflow pairs: %d for %s reused from %s", len(pairs), name, path)
            return pairs
        except Exception as err:  # a damaged or foreign file: make them again
            LOG.warning("reflow pairs %s unreadable (%s); generating them again", path, err)
    start = time.perf_counter()
    pairs = make()
    pairs.save(path, key)
    LOG.info("reflow pairs: %d for %s generated in %.1f s -> %s", len(pairs), name, time.perf_counter() - start, path)
    return pairs
