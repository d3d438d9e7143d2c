"""Aligned episodes -> LeRobot v3.0 datasets through lerobot's own writer, and safe assembly of them.

Each episode is first written as a finalised one-episode dataset of its own (a "part"); the output
dataset is then assembled from the previous output and the new parts with lerobot's
``aggregate_datasets`` into a temporary folder that replaces the output by renaming. The output folder is
therefore always a complete dataset lerobot opens, whatever moment a run is killed at.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.data.config import ConversionConfig
from kuavo_smolvla_ros.data.episode import Episode

REPO_ID = "local/kuavo"
IMAGE_NAMES = ["height", "width", "channels"]


class DatasetError(ValueError):
    """An output dataset that cannot be written or extended; the message says why."""


def features(config: ConversionConfig, image_shapes: dict[str, tuple[int, int]]) -> dict[str, dict]:
    """LeRobot features: state and action named after the robot's joints, one image/video per camera."""
    vector = {"dtype": "float32", "shape": (robot.STATE_DIM,), "names": list(robot.JOINT_NAMES)}
    result = {robot.STATE_FEATURE: dict(vector), robot.ACTION_FEATURE: dict(vector)}
    dtype = "video" if config.images.storage == "video" else "image"
    for camera in config.cameras:
        height, width = image_shapes[camera.name]
        result[camera.feature_key] = {"dtype": dtype, "shape": (height, width, 3), "names": IMAGE_NAMES}
    return result


def _resize(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or image.shape[:2] == tuple(size):
        return image
    import cv2

    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def _decoded(episode: Episode, size: tuple[int, int] | None, workers: int = 2, ahead: int = 8
             ) -> Iterator[dict[str, np.ndarray]]:
    """Each kept tick's camera images, decoded (and resized) by a small thread pool a few ticks ahead."""
    cameras = list(episode.frames)

    def load(index: int) -> dict[str, np.ndarray]:
        return {c: _resize(episode.frames[c][index](), size) for c in cameras}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for index in range(len(episode)):
            pending.append(pool.submit(load, index))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def quiet_codecs() -> None:
    """Keep FFmpeg's per-file encoder statistics out of the console (errors still show)."""
    import av

    av.logging.set_level(av.logging.ERROR)


def write_part(episode: Episode, root: Path, config: ConversionConfig, instruction: str,
               image_shapes: dict[str, tuple[int, int]], progress: Callable[[int], None] | None = None) -> None:
    """Write ``episode`` as a finalised one-episode LeRobot dataset at ``root`` (which must not exist)."""
    from lerobot.configs.video import RGBEncoderConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    quiet_codecs()
    video = config.images.storage == "video"
    encoder = None
    if video:
        settings = config.images.video
        encoder = RGBEncoderConfig(vcodec=settings.codec, preset=settings.preset, crf=settings.crf, g=settings.gop)
    dataset = LeRobotDataset.create(
        REPO_ID, config.fps, features(config, image_shapes), root=root, robot_type=robot.ROBOT_TYPE,
        use_videos=video, streaming_encoding=video, rgb_encoder=encoder, video_backend="pyav",
        image_writer_threads=0 if video else 2)
    size = tuple(config.images.size) if config.images.size else None
    try:
        for index, decoded in enumerate(_decoded(episode, size)):
            frame = {robot.STATE_FEATURE: episode.state[index], robot.ACTION_FEATURE: episode.action[index],
                     "task": instruction}
            for camera in config.cameras:
                image = decoded[camera.name]
                if image.shape[:2] != image_shapes[camera.name]:
                    raise DatasetError(
                        f"camera {camera.name} is {image.shape[0]}x{image.shape[1]} but the dataset's is "
                        f"{image_shapes[camera.name][0]}x{image_shapes[camera.name][1]}: set images.size to resize")
                frame[camera.feature_key] = image
            dataset.add_frame(frame)
            if progress:
                progress(1)
        dataset.save_episode()
    except BaseException:
        with contextlib.suppress(Exception):  # the caller deletes the part; only release the encoder
            dataset.finalize()
        raise
    dataset.finalize()


def open_metadata(root: Path):
    """lerobot's metadata of the dataset at ``root`` (local only)."""
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata

    return LeRobotDatasetMetadata(REPO_ID, root=root)


def image_shapes_of(root: Path) -> dict[str, tuple[int, int]]:
    """Camera name -> (height, width) of an existing dataset."""
    meta = open_metadata(root)
    prefix = "observation.images."
    return {key[len(prefix):]: tuple(ft["shape"][:2]) for key, ft in meta.features.items()
            if key.startswith(prefix)}


def check_compatible(root: Path, config: ConversionConfig, image_shapes: dict[str, tuple[int, int]]) -> None:
    """Fail if the dataset at ``root`` cannot take episodes converted with ``config``."""
    meta = open_metadata(root)
    if meta.fps != config.fps:
        raise DatasetError(f"{root} has fps {meta.fps}, the config says {config.fps}")
    expected = features(config, image_shapes)
    theirs = {k: (v["dtype"], tuple(v["shape"])) for k, v in meta.features.items() if k in expected or
              k.startswith("observation.")}
    ours = {k: (v["dtype"], tuple(v["shape"])) for k, v in expected.items()}
    if theirs != ours:
        raise DatasetError(f"{root} has features {theirs}, this conversion would write {ours}")


def assemble(output: Path, parts: list[Path], finish: Callable[[Path], None]) -> None:
    """Replace ``output`` by ``output`` (if it exists) + ``parts``, in that order, atomically.

    ``finish(tmp)`` runs on the assembled copy before the swap (to add the run report).
    """
    from lerobot.datasets.aggregate import aggregate_datasets

    sources = ([output] if output.exists() else []) + list(parts)
    if not sources:
        return
    quiet_codecs()
    tmp, old = sibling(output, "tmp"), sibling(output, "old")
    shutil.rmtree(tmp, ignore_errors=True)
    aggregate_datasets([REPO_ID] * len(sources), REPO_ID, roots=sources, aggr_root=tmp)
    finish(tmp)
    if output.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(output, old)
    os.replace(tmp, output)
    shutil.rmtree(old, ignore_errors=True)


def sibling(output: Path, suffix: str) -> Path:
    """A working folder next to the output (``<output>.<suffix>``)."""
    return output.with_name(f"{output.name}.{suffix}")


def recover(output: Path) -> None:
    """Undo a swap interrupted between its two renames, and drop a half-assembled copy."""
    old = sibling(output, "old")
    if not output.exists() and old.exists():
        os.replace(old, output)
    shutil.rmtree(sibling(output, "tmp"), ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
