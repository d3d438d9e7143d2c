"""The curriculum's LeRobot datasets: checked before training, opened for it (or their in-memory copies), and
their fixed normalisation statistics.

Statistics are aggregated once over every stage's dataset (lerobot's ``aggregate_stats``) and stay the
same for all four stages, so an earlier task never sees shifted normalisation; they travel in every
checkpoint. Only the 16 real dimensions have statistics: SmolVLA pads state and action to 32 after
normalising, so the padding is identity.

With relative actions (``action_mode: relative``) the policy learns ``action[t+k] - state[t]`` for
k in 0..chunk_size-1, so the action statistics are lerobot's relative action statistics
(``compute_relative_action_stats``: every chunk inside one episode) over all the curriculum's episodes,
read from the datasets' parquet data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kuavo_smolvla_ros import features, robot
from kuavo_smolvla_ros.data.dataset import REPO_ID, open_metadata
from kuavo_smolvla_ros.policy.checkpoint import ACTION_MODES
from kuavo_smolvla_ros.training.common.errors import TrainingConfigError
from kuavo_smolvla_ros.training.curriculum import Stage

NORMALISED = (features.OBS_STATE, features.ACTION)


def stage_metadata(stage: Stage):
    """lerobot's ``LeRobotDatasetMetadata`` of a stage's dataset (``data.dataset.open_metadata``), or a
    :class:`TrainingConfigError` naming the stage when there is no dataset or it cannot be opened."""
    if not (stage.dataset / "meta" / "info.json").is_file():
        raise TrainingConfigError(f"stage {stage.number} ({stage.task.name}): no LeRobot dataset at {stage.dataset} "
                                  f"(meta/info.json missing; convert the bags with kuavo-rosbag-to-lerobot)")
    try:
        return open_metadata(stage.dataset)
    except Exception as err:
        raise TrainingConfigError(f"stage {stage.number}: cannot open {stage.dataset}: {err}") from None


def training_dataset(root: Path, episodes: list[int], delta_timestamps: dict[str, list[float]] | None = None,
                     cache_dir: Path | None = None, num_workers: int = 0, batch_size: int = 64) -> Any:
    """The LeRobot dataset at ``root`` restricted to ``episodes`` (video decoded with pyav), its items with the
    ``delta_timestamps`` (key -> offsets in seconds, e.g. an action chunk) when given. With ``cache_dir``
    (``data_cache: memory``) its in-memory copy instead (``training/memory.py``: read from ``cache_dir``, or
    built from the dataset with ``num_workers`` loader processes and batches of ``batch_size``, then saved
    there). Raises what lerobot raises for a dataset it cannot open."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    def open_dataset():
        dataset = LeRobotDataset(REPO_ID, root=root, episodes=episodes, video_backend="pyav",
                                 delta_timestamps=delta_timestamps)
        if delta_timestamps and getattr(getattr(dataset, "reader", None), "hf_dataset", None) is not None:
            dataset.reader.hf_dataset = ColumnQueries(dataset.reader.hf_dataset)
        return dataset

    if cache_dir is None:
        return open_dataset()
    from kuavo_smolvla_ros.training.memory import cached

    return cached(cache_dir, root, episodes, delta_timestamps, open_dataset, num_workers=num_workers,
                  batch_size=batch_size)


class _Column:
    """Rows of one column, read from a ``datasets.Dataset`` holding only that column (``ColumnQueries``): indexed
    by a row or a list of rows, its length, iterated in order."""

    def __init__(self, dataset: Any, key: str):
        self.dataset, self.key = dataset, key

    def __getitem__(self, index: Any) -> Any:
        return self.dataset[index][self.key]

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Any:
        return iter(self.dataset[self.key])


class ColumnQueries:
    """A lerobot reader's ``hf_dataset`` (a ``datasets.Dataset``) whose column queries decode that column only.

    lerobot 0.6 reads an item's windows (``delta_timestamps``: the 50-action chunk) as
    ``hf_dataset[key][indices]``; on its datasets, formatted by a custom transform, ``datasets`` answers that by
    decoding every column of those rows, the PNG images of image-storage datasets included, to keep one: 150
    PNG decodes for each item of a three-camera dataset (105 ms an item here, 95% of building the demo's data
    cache). Here ``view[key]`` reads from ``hf_dataset.select_columns([key])`` (same transform, the same
    tensors: ``test/test_training_toolkit.py`` compares whole items); everything else is the dataset's own. The
    one-column copies are made on first use: a format or transform set later through the view does not reach them.
    """

    def __init__(self, hf_dataset: Any):
        self._hf = hf_dataset
        self._columns: dict[str, Any] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            if key not in self._columns:
                self._columns[key] = self._hf.select_columns([key])
            return _Column(self._columns[key], key)
        return self._hf[key]

    def __len__(self) -> int:
        return len(self._hf)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # (unpickling looks these up before __init__ ran)
            raise AttributeError(name)
        return getattr(self._hf, name)


def _signature(meta) -> dict[str, tuple]:
    return {key: (ft["dtype"], tuple(ft["shape"])) for key, ft in meta.features.items()
            if key.startswith("observation.") or key == features.ACTION}


def check_datasets(stages: Sequence[Stage]) -> list:
    """Open every stage's dataset and fail, naming them, if fps or feature shapes disagree."""
    metas = [stage_metadata(stage) for stage in stages]
    first, reference = stages[0], metas[0]
    for key in NORMALISED:
        shape = tuple(reference.features.get(key, {}).get("shape", ()))
        if shape != (robot.ACTION_DIM,):
            raise TrainingConfigError(f"{first.dataset}: feature {key} has shape {shape}, expected "
                                      f"({robot.ACTION_DIM},)")
    for stage, meta in zip(stages[1:], metas[1:], strict=True):
        if meta.fps != reference.fps:
            raise TrainingConfigError(f"{stage.dataset} runs at {meta.fps} fps but {first.dataset} at "
                                      f"{reference.fps} fps")
        ours, theirs = _signature(meta), _signature(reference)
        if ours != theirs:
            diff = sorted(set(ours.items()) ^ set(theirs.items()))
            raise TrainingConfigError(f"{stage.dataset} and {first.dataset} have different features: {diff}")
    for stage, meta in zip(stages, metas, strict=True):
        if meta.total_episodes < 1:
            raise TrainingConfigError(f"{stage.dataset} has no episodes")
    return metas


def curriculum_stats(metas: Sequence, action_mode: str = "absolute", chunk_size: int | None = None
                     ) -> dict[str, dict[str, np.ndarray]]:
    """State and action statistics aggregated over every dataset of the curriculum (lerobot's way); with
    ``action_mode="relative"`` the action statistics are those of the deltas (:func:`delta_action_stats`).
    Raises :class:`TrainingConfigError` for an unknown mode, or relative actions without a chunk size or an
    episode as long as one chunk."""
    from lerobot.datasets.compute_stats import aggregate_stats

    if action_mode not in ACTION_MODES:
        raise TrainingConfigError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
    stats = aggregate_stats([{k: m.stats[k] for k in NORMALISED} for m in metas])
    if action_mode == "relative":
        if not chunk_size or chunk_size < 1:
            raise TrainingConfigError(f"relative actions need the policy's chunk_size, got {chunk_size!r}")
        stats[features.ACTION] = delta_action_stats([m.root for m in metas], chunk_size)
    for key in NORMALISED:
        std = np.asarray(stats[key]["std"], dtype=np.float64)
        stats[key]["std"] = np.maximum(std, 1e-6)  # a constant joint must not divide by zero
    return stats


def episode_arrays(root: str | Path) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(episode index, state (N, 16), action (N, 16)) of every episode in ``root/data/**/*.parquet``, frames
    in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = ["episode_index", "frame_index", features.OBS_STATE, features.ACTION]
    files = sorted(Path(root).glob("data/**/*.parquet"))
    if not files:
        raise TrainingConfigError(f"{root}: no parquet files under data/")
    table = pa.concat_tables([pq.read_table(f, columns=columns) for f in files])

    def matrix(name: str) -> np.ndarray:
        column = table.column(name).combine_chunks()
        return column.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(column), -1)

    episodes = table.column("episode_index").to_numpy()
    frames = table.column("frame_index").to_numpy()
    state, action = matrix(features.OBS_STATE), matrix(features.ACTION)
    order = np.lexsort((frames, episodes))
    episodes, state, action = episodes[order], state[order], action[order]
    starts = np.flatnonzero(np.r_[True, episodes[1:] != episodes[:-1]])
    for start, end in zip(starts, [*starts[1:], len(episodes)], strict=True):
        yield int(episodes[start]), state[start:end], action[start:end]


def delta_action_stats(roots: Sequence[str | Path], chunk_size: int) -> dict[str, np.ndarray]:
    """lerobot's relative action statistics (:func:`~kuavo_smolvla_ros.policy.processors.relative_action_stats`:
    ``action[t+k] - state[t]``, k < ``chunk_size``, every chunk inside one episode; mean, std, min, max,
    quantiles, count) over every episode of every dataset in ``roots``. Raises :class:`TrainingConfigError`
    when no episode is as long as one chunk."""
    from kuavo_smolvla_ros.policy.processors import relative_action_stats

    episodes = [(state, action) for root in roots for _, state, action in episode_arrays(root)]
    try:
        return relative_action_stats(episodes, chunk_size)
    except ValueError as err:
        raise TrainingConfigError(f"{err} in {[str(r) for r in roots]}") from None
