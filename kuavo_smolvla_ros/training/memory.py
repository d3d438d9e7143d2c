"""An in-memory copy of a LeRobot dataset's items, built once and cached on disk (``data_cache: memory``).

At the tiny model's size most of a training step is data loading: PNG or video decoding and lerobot's
per-item query of the action chunk. :class:`MemoryDataset` holds every item's tensors stacked (camera
images as uint8 whenever that is exact, i.e. the float images are k/255, which decoded PNGs and videos
are), so an item or a whole batch is a tensor index away. It is built once by iterating the LeRobot
dataset (a DataLoader with workers) and saved under ``<output_root>/.data_cache/`` keyed by a hash of
the dataset root, its files, the selected episodes and the delta timestamps (chunk size, fps), so later
stages and re-runs load it instantly. Items equal the LeRobot dataset's: same keys, dtypes (images
float32 in [0, 1]) and values.

Memory is the images' size (uint8): fine for small demo datasets, not for full-resolution recordings
(the real recipe keeps ``data_cache: none``).

Indexing with a list of indices returns the collated batch directly (what ``default_collate`` of the
items gives), so a ``DataLoader(dataset, sampler=<batch sampler>, batch_size=None)`` fetches a batch
with one gather per key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from kuavo_smolvla_ros.atomic import atomic_path
from kuavo_smolvla_ros.features import camera_of

LOG = logging.getLogger(__name__)
FORMAT_VERSION = 1
CACHE_DIR = ".data_cache"


class MemoryDataset(torch.utils.data.Dataset):
    """Stacked item tensors; ``dataset[i]`` is item ``i``, ``dataset[[i, j, ...]]`` the collated batch."""

    def __init__(self, length: int, keys: Sequence[str], tensors: dict[str, torch.Tensor],
                 uint8_images: Sequence[str] = (), strings: dict[str, tuple[list[str], torch.Tensor]] | None = None):
        self.length = int(length)
        self.keys = list(keys)
        self.tensors = dict(tensors)
        self.uint8_images = set(uint8_images)
        #: key -> (distinct values, int64 index of each item's value)
        self.strings = dict(strings or {})
        #: "built" (iterated from the dataset now) or "cache" (read from the cache file)
        self.origin = "built"
        for key, tensor in self.tensors.items():
            if len(tensor) != self.length:
                raise ValueError(f"{key}: {len(tensor)} rows for {self.length} items")
        missing = set(self.keys) - set(self.tensors) - set(self.strings)
        if missing:
            raise ValueError(f"no data for keys {sorted(missing)}")

    def __len__(self) -> int:
        return self.length

    def _value(self, key: str, index):
        if key in self.strings:
            values, codes = self.strings[key]
            if isinstance(index, int):
                return values[int(codes[index])]
            return [values[c] for c in codes[index].tolist()]
        tensor = self.tensors[key][index]
        if key in self.uint8_images:
            return tensor.to(torch.float32).div_(255)  # as lerobot: uint8 -> float32 / 255
        return tensor.clone() if isinstance(index, int) else tensor  # never a view of the cache

    def __getitem__(self, index):
        if isinstance(index, torch.Tensor):
            index = index.tolist()
        if isinstance(index, Sequence):
            rows = torch.as_tensor(list(index), dtype=torch.int64)
            if len(rows) and (int(rows.min()) < -self.length or int(rows.max()) >= self.length):
                raise IndexError(f"index out of range for {self.length} items")
            return {key: self._value(key, rows) for key in self.keys}
        index = int(index)
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        index %= self.length
        return {key: self._value(key, index) for key in self.keys}

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    # ------------------------------------------------------------------------------- build / io
    @classmethod
    def from_dataset(cls, dataset, num_workers: int = 0, batch_size: int = 64, desc: str = "caching") -> MemoryDataset:
        """Iterate ``dataset`` once (a DataLoader with ``num_workers``) and stack its items. The global
        torch RNG is left as it was, so building a cache does not change what training draws."""
        from tqdm import tqdm

        chunks: dict[str, list[torch.Tensor]] = {}
        texts: dict[str, list[str]] = {}
        uint8: dict[str, bool] = {}
        keys: list[str] = []
        count = 0
        with torch.random.fork_rng(devices=[]):
            loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                                 num_workers=num_workers)
            for batch in tqdm(loader, desc=desc, leave=False, disable=None):
                if not keys:
                    keys = list(batch)
                size = None
                for key in keys:
                    value = batch[key]
                    if isinstance(value, torch.Tensor):
                        size = len(value)
                        if camera_of(key) and value.dtype == torch.float32 and uint8.get(key, True):
                            packed = _as_uint8(value)
                            if packed is None:  # not k/255: keep float32 from now on (earlier chunks too)
                                uint8[key] = False
                                chunks[key] = [c.to(torch.float32).div_(255) for c in chunks.get(key, [])]
                            else:
                                uint8[key] = True
                                value = packed
                        chunks.setdefault(key, []).append(value)
                    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                        texts.setdefault(key, []).extend(value)
                    else:
                        raise TypeError(f"cannot cache item key {key!r} of type {type(value).__name__}")
                count += size if size is not None else len(batch[keys[0]])
        if count != len(dataset):
            raise RuntimeError(f"cached {count} items of a dataset of {len(dataset)}")
        tensors = {key: torch.cat(parts) for key, parts in chunks.items()}
        strings = {}
        for key, values in texts.items():
            distinct = sorted(set(values))
            lookup = {v: i for i, v in enumerate(distinct)}
            strings[key] = (distinct, torch.tensor([lookup[v] for v in values], dtype=torch.int64))
        return cls(count, keys, tensors, [k for k, v in uint8.items() if v], strings)

    def to_state(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "length": self.length, "keys": self.keys, "tensors": self.tensors,
                "uint8_images": sorted(self.uint8_images),
                "strings": {k: {"values": v, "index": i} for k, (v, i) in self.strings.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MemoryDataset:
        if state.get("format") != FORMAT_VERSION:
            raise ValueError(f"cache format {state.get('format')!r}, expected {FORMAT_VERSION}")
        strings = {k: (list(v["values"]), v["index"]) for k, v in state["strings"].items()}
        return cls(state["length"], state["keys"], state["tensors"], state["uint8_images"], strings)

    def save(self, path: Path) -> None:
        """Write to ``path``, complete or not at all (``atomic.atomic_path``; plain tensors, lists and strings,
        loadable with ``weights_only``); creates the folder."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(self.to_state(), tmp)

    @classmethod
    def load(cls, path: Path) -> MemoryDataset:
        dataset = cls.from_state(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
        dataset.origin = "cache"
        return dataset

    @classmethod
    def concat(cls, parts: Sequence[MemoryDataset]) -> MemoryDataset:
        """One dataset of ``parts`` in order (what ``ConcatDataset`` indexes), as one set of tensors."""
        if not parts:
            raise ValueError("nothing to concatenate")
        if len(parts) == 1:
            return parts[0]
        keys = parts[0].keys
        if any(set(p.keys) != set(keys) for p in parts):
            raise ValueError(f"datasets with different keys: {[sorted(p.keys) for p in parts]}")
        uint8 = set.intersection(*(p.uint8_images for p in parts))
        tensors = {}
        for key in parts[0].tensors:
            tensors[key] = torch.cat([p.tensors[key] if key in uint8 or key not in p.uint8_images
                                      else p.tensors[key].to(torch.float32).div(255) for p in parts])
        strings = {}
        for key in parts[0].strings:
            distinct = sorted({v for p in parts for v in p.strings[key][0]})
            lookup = {v: i for i, v in enumerate(distinct)}
            codes = [torch.tensor([lookup[v] for v in p.strings[key][0]], dtype=torch.int64)[p.strings[key][1]]
                     for p in parts]
            strings[key] = (distinct, torch.cat(codes))
        return cls(sum(len(p) for p in parts), keys, tensors, uint8, strings)


def _as_uint8(images: torch.Tensor) -> torch.Tensor | None:
    """``images`` as uint8 if ``uint8 / 255`` gives back exactly the same float32 values, else None."""
    packed = images.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    return packed if torch.equal(packed.to(torch.float32).div_(255), images) else None


def cache_key(root: str | Path, episodes: Sequence[int] | None, delta_timestamps: dict | None) -> str:
    """A hash of what the items depend on: the dataset root, its files (meta/info.json content; name, size
    and mtime of every file), the episodes, the delta timestamps (chunk size and fps) and lerobot's version."""
    import lerobot

    root = Path(root).resolve()
    info = (root / "meta" / "info.json").read_text()
    files = sorted((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in root.rglob("*") if p.is_file())
    fps = json.loads(info).get("fps")
    chunk = {k: len(v) for k, v in (delta_timestamps or {}).items()}
    key = {"format": FORMAT_VERSION, "lerobot": getattr(lerobot, "__version__", "?"), "root": str(root),
           "info": info, "files": files, "episodes": None if episodes is None else [int(e) for e in episodes],
           "delta_timestamps": delta_timestamps, "chunk": chunk, "fps": fps}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cached(cache_dir: str | Path, root: str | Path, episodes: Sequence[int] | None, delta_timestamps: dict | None,
           open_dataset: Callable[[], Any], num_workers: int = 0, batch_size: int = 64) -> MemoryDataset:
    """The :class:`MemoryDataset` of the LeRobot dataset ``open_dataset()`` would return (root, episodes,
    delta timestamps as given): read from ``cache_dir`` if cached, else built (``open_dataset`` is called
    only then) and saved there."""
    path = Path(cache_dir) / f"{cache_key(root, episodes, delta_timestamps)}.pt"
    which = "every episode" if episodes is None else f"{len(episodes)} episode(s)"  # (training and held-out parts)
    if path.is_file():
        try:
            dataset = MemoryDataset.load(path)
            LOG.info("data cache: %s, %s (%d items) from %s", root, which, len(dataset), path)
            return dataset
        except Exception as err:  # a damaged or foreign file: rebuild it
            LOG.warning("data cache %s unreadable (%s); rebuilding", path, err)
    start = time.perf_counter()
    dataset = MemoryDataset.from_dataset(open_dataset(), num_workers=num_workers, batch_size=batch_size,
                                         desc=f"caching {Path(root).name}")
    dataset.save(path)
    LOG.info("data cache: built %s, %s (%d items, %.1f MB) in %.1f s -> %s", root, which, len(dataset),
             dataset.nbytes / 2**20, time.perf_counter() - start, path)
    return dataset


def cached_lerobot(dataset, cache_dir: str | Path, num_workers: int = 0, batch_size: int = 64) -> MemoryDataset:
    """:func:`cached` for an open ``LeRobotDataset`` (its root, episodes and delta timestamps)."""
    return cached(cache_dir, dataset.root, dataset.episodes, dataset.delta_timestamps, lambda: dataset,
                  num_workers=num_workers, batch_size=batch_size)


def batch_loader(dataset, batches: Iterable[list[int]], num_workers: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader yielding the collated items of each index list in ``batches``. A :class:`MemoryDataset`
    gathers a whole batch at once (the tensors default_collate would stack), in this process; other datasets
    load items in ``num_workers`` worker processes."""
    if isinstance(dataset, MemoryDataset) or getattr(dataset, "gathers_batches", False):
        return torch.utils.data.DataLoader(dataset, sampler=batches, batch_size=None, num_workers=0)
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=num_workers)
