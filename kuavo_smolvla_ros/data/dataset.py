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
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.atomic import replace_dir
from kuavo_smolvla_ros.data.config import ConversionConfig
from kuavo_smolvla_ros.data.episode import Episode
from kuavo_smolvla_ros.features import ACTION, OBS_STATE, camera_of

#: The repo id given to lerobot's dataset classes for our local datasets (the converter's and training's).
REPO_ID = "local/kuavo"
#: zlib level of PNG-mode images (1: fast, files ~10% larger than lerobot's level 6).
PNG_COMPRESSION = 1
IMAGE_NAMES = ["height", "width", "channels"]


class DatasetError(ValueError):
    """An output dataset that cannot be written or extended; the message says why."""


class CorruptFrameError(DatasetError):
    """A camera frame whose data turned out corrupt when it was decoded for writing (its header was fine)."""


def features(config: ConversionConfig, image_shapes: dict[str, tuple[int, int]]) -> dict[str, dict]:
    """LeRobot features: state and action named after the robot's joints, one image/video per camera."""
    vector = {"dtype": "float32", "shape": (robot.STATE_DIM,), "names": list(robot.JOINT_NAMES)}
    result = {OBS_STATE: dict(vector), ACTION: dict(vector)}
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


def _per_tick(count: int, work: Callable[[int], dict], workers: int = 2, ahead: int = 8) -> Iterator[dict]:
    """``work(i)`` for every tick in order, run by a small thread pool a few ticks ahead (image decoding
    and PNG encoding release the GIL)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for index in range(count):
            pending.append(pool.submit(work, index))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _images_loader(episode: Episode, config: ConversionConfig, image_shapes: dict[str, tuple[int, int]]
                   ) -> Callable[[int], dict[str, np.ndarray]]:
    """A function decoding (and resizing) one tick's camera images, checking their size."""
    size = tuple(config.images.size) if config.images.size else None

    def load(index: int) -> dict[str, np.ndarray]:
        images = {}
        for camera, frames in episode.frames.items():
            try:
                image = _resize(frames[index].decode(), size)
            except ValueError as err:  # images.ImageError: a frame whose data is corrupt
                raise CorruptFrameError(f"camera {camera}: the frame of row {index} (tick {episode.times[index]:.3f} "
                                        f"s) cannot be decoded: {err}") from None
            if image.shape[:2] != image_shapes[camera]:
                raise DatasetError(
                    f"camera {camera} is {image.shape[0]}x{image.shape[1]} but the dataset's is "
                    f"{image_shapes[camera][0]}x{image_shapes[camera][1]}: set images.size to resize")
            images[camera] = image
        return images

    return load


def quiet_codecs() -> None:
    """Keep FFmpeg's per-file encoder statistics out of the console (errors still show)."""
    import av

    av.logging.set_level(av.logging.ERROR)
    av.logging.set_libav_level(av.logging.ERROR)  # also once lerobot's encoder restores FFmpeg's own logger


class _EncoderBackpressure:
    """Makes lerobot's streaming video encoder lossless for offline conversion.

    The encoder is built for live recording: when its per-camera queue is full it drops the frame
    (with a warning). Here the producer waits for room instead, and any drop that still happens fails
    the episode. Uses the encoder's private queues (lerobot 0.6.x); without them it only checks drops.
    """

    def __init__(self, dataset):
        self.encoder = getattr(dataset.writer, "_streaming_encoder", None)

    def wait_for_room(self) -> None:
        if self.encoder is None:
            return
        threads = getattr(self.encoder, "_threads", {})
        for key, frames in getattr(self.encoder, "_frame_queues", {}).items():
            while frames.full() and (key not in threads or threads[key].is_alive()):
                time.sleep(0.002)

    def check(self) -> None:
        dropped = {k: v for k, v in getattr(self.encoder, "_dropped_frames", {}).items() if v}
        if dropped:
            raise DatasetError(f"the video encoder dropped frames {dropped}; the episode is not written")


def write_part(episodes: Episode | Sequence[Episode], root: Path, config: ConversionConfig, instruction: str,
               image_shapes: dict[str, tuple[int, int]], progress: Callable[[int], None] | None = None) -> None:
    """Write ``episodes`` (one bag's: one, or several when it was cut at breaks in time) as a finalised LeRobot
    dataset at ``root`` (which must not exist), in order; ``progress(n)`` after every n frames."""
    from lerobot.configs.video import RGBEncoderConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    episodes = [episodes] if isinstance(episodes, Episode) else list(episodes)
    quiet_codecs()
    video = config.images.storage == "video"
    encoder = None
    if video:
        settings = config.images.video
        encoder = RGBEncoderConfig(vcodec=settings.codec, preset=settings.preset, crf=settings.crf, g=settings.gop)
    dataset = LeRobotDataset.create(
        REPO_ID, config.rate, features(config, image_shapes), root=root, robot_type=config.profile.robot_type,
        use_videos=video, streaming_encoding=video, rgb_encoder=encoder, video_backend="pyav")
    try:
        for episode in episodes:
            load = _images_loader(episode, config, image_shapes)
            if video:
                _stream_video_episode(dataset, episode, config, instruction, load, progress)
            else:
                _save_png_episode(dataset, episode, config, instruction, load, progress)
    except BaseException:
        with contextlib.suppress(Exception):  # the caller deletes the part; only release the encoder
            dataset.finalize()
        raise
    dataset.finalize()


def _stream_video_episode(dataset, episode: Episode, config: ConversionConfig, instruction: str,
                          load: Callable[[int], dict[str, np.ndarray]],
                          progress: Callable[[int], None] | None) -> None:
    """Frames through ``add_frame`` into lerobot's streaming video encoder (no temporary images)."""
    backpressure = _EncoderBackpressure(dataset)
    for index, images in enumerate(_per_tick(len(episode), load)):
        frame = {OBS_STATE: episode.state[index], ACTION: episode.action[index],
                 "task": instruction}
        for camera in config.cameras:
            frame[camera.feature_key] = images[camera.name]
        backpressure.wait_for_room()
        dataset.add_frame(frame)
        if progress:
            progress(1)
    backpressure.check()
    dataset.save_episode()


def _save_png_episode(dataset, episode: Episode, config: ConversionConfig, instruction: str,
                      load: Callable[[int], dict[str, np.ndarray]],
                      progress: Callable[[int], None] | None) -> None:
    """PNG mode: images written by the decoding threads with fast zlib settings, then the whole episode
    handed to lerobot's ``save_episode(episode_data=...)``, which embeds the PNG files as they are.

    (``add_frame`` would compress every image at zlib level 6 on one thread: about ten times slower.)
    """
    import cv2

    staging = Path(dataset.root) / "png_staging"
    keys = {c.name: c.feature_key for c in config.cameras}

    def write(index: int) -> dict[str, str]:
        paths = {}
        for camera, image in load(index).items():
            path = staging / camera / f"frame-{index:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(path), image[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]):
                raise DatasetError(f"could not write {path}")
            paths[camera] = str(path)
        if progress:
            progress(1)
        return paths

    count = len(episode)
    buffer: dict = {"size": count, "task": [instruction] * count, "episode_index": dataset.meta.total_episodes,
                    "frame_index": list(range(count)), "timestamp": [i / config.rate for i in range(count)],
                    "index": [], "task_index": [],  # filled in by save_episode
                    OBS_STATE: list(episode.state), ACTION: list(episode.action)}
    buffer |= {key: [] for key in keys.values()}
    for paths in _per_tick(count, write):
        for camera, path in paths.items():
            buffer[keys[camera]].append(path)
    dataset.save_episode(episode_data=buffer)
    shutil.rmtree(staging, ignore_errors=True)


def open_metadata(root: Path):
    """lerobot's ``LeRobotDatasetMetadata`` of the dataset at ``root`` (local only; raises what lerobot raises
    for a folder that is not a LeRobot dataset)."""
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata

    return LeRobotDatasetMetadata(REPO_ID, root=root)


def image_shapes_of(root: Path) -> dict[str, tuple[int, int]]:
    """Camera name -> (height, width) of an existing dataset."""
    meta = open_metadata(root)
    return {camera_of(key): tuple(ft["shape"][:2]) for key, ft in meta.features.items() if camera_of(key)}


def check_compatible(root: Path, config: ConversionConfig, image_shapes: dict[str, tuple[int, int]]) -> None:
    """Fail if the dataset at ``root`` cannot take episodes converted with ``config``."""
    meta = open_metadata(root)
    if meta.fps != config.rate:
        raise DatasetError(f"{root} has fps {meta.fps}, the config says {config.rate}")
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
    if len(sources) == 1:  # a new dataset of one episode: the part is the dataset (no copy)
        os.replace(sources[0], tmp)
    else:
        aggregate_datasets([REPO_ID] * len(sources), REPO_ID, roots=sources, aggr_root=tmp)
    finish(tmp)
    replace_dir(tmp, output, old)


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
