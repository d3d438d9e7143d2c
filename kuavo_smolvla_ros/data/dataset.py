"""Aligned rows -> LeRobot v3.0 datasets through lerobot's own writer, and safe assembly of them.

Each bag's episodes are first written, row by row as the bag is aligned, as a finalised dataset of its own
(a "part", :class:`PartWriter`); the output
dataset is then assembled from the previous output and the new parts with lerobot's
``aggregate_datasets`` into a temporary folder that replaces the output by renaming. The output folder is
therefore always a complete dataset lerobot opens, whatever moment a run is killed at.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.atomic import replace_dir
from kuavo_smolvla_ros.data.align import Row
from kuavo_smolvla_ros.data.config import ConversionConfig
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


def quiet_codecs() -> None:
    """Keep FFmpeg's per-file encoder statistics out of the console (errors still show)."""
    import av

    av.logging.set_level(av.logging.ERROR)
    av.logging.set_libav_level(av.logging.ERROR)  # also once lerobot's encoder restores FFmpeg's own logger


class _EncoderBackpressure:
    """Makes lerobot's streaming video encoder lossless for offline conversion.

    The encoder is built for live recording: when its per-camera queue is full it drops the frame
    (with a warning). Here the producer waits while a camera's queue holds ``depth`` frames or more (a
    few: enough to keep its encoder thread busy, far fewer than the queue's 30 decoded images per
    camera, which would be ~80 MB of 640x480 frames held), and any drop that still happens fails the
    episode. Uses the encoder's private queues (lerobot 0.6.x); without them it only checks drops.
    """

    def __init__(self, dataset, depth: int = 4):
        self.encoder = getattr(dataset.writer, "_streaming_encoder", None)
        self.depth = depth

    def wait_for_room(self) -> None:
        if self.encoder is None:
            return
        threads = getattr(self.encoder, "_threads", {})
        for key, frames in getattr(self.encoder, "_frame_queues", {}).items():
            while (frames.full() or frames.qsize() >= self.depth) and (key not in threads or threads[key].is_alive()):
                time.sleep(0.002)

    def check(self) -> None:
        dropped = {k: v for k, v in getattr(self.encoder, "_dropped_frames", {}).items() if v}
        if dropped:
            raise DatasetError(f"the video encoder dropped frames {dropped}; the episode is not written")


class PartWriter:
    """One bag's part: a finalised LeRobot dataset at ``root`` (which must not exist) written row by row, one
    episode per kept piece (a :class:`~kuavo_smolvla_ros.data.align.RowSink`).

    A small thread pool decodes (and resizes) each row's camera frames a few rows ahead of lerobot's writer
    while the bag is still being read. Video storage: the images go through lerobot's streaming encoder
    (``add_frame``; per-camera encoder threads, which also compute lerobot's image statistics), waiting for
    room rather than letting it drop frames. PNG storage: the threads write the images with fast zlib settings
    and the episode is handed to lerobot's ``save_episode(episode_data=...)``, which embeds the files as they
    are (``add_frame`` would compress every image at zlib level 6 on one thread: about ten times slower).
    Held: at most ``ahead`` rows' images. The dataset is created at the first row, sized by ``image_shapes`` or,
    when empty, by that row's frames. Raises :class:`CorruptFrameError` for a frame whose data cannot be
    decoded, :class:`DatasetError` for a frame of another size than the dataset's.
    """

    def __init__(self, root: Path, config: ConversionConfig, instruction: str,
                 image_shapes: dict[str, tuple[int, int]] | None, progress: Callable[[int], None] | None = None,
                 threads: int = 2, ahead: int = 8):
        self.root = Path(root)
        self.config, self.instruction, self.progress, self.ahead = config, instruction, progress, ahead
        self.image_shapes = dict(image_shapes or {})
        self.video = config.images.storage == "video"
        self.size = tuple(config.images.size) if config.images.size else None
        self.keys = {c.name: c.feature_key for c in config.cameras}
        self.dataset = None
        self._backpressure: _EncoderBackpressure | None = None
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kuavo-frames")
        self._pending: deque[tuple[Row, Future]] = deque()
        self._rows = 0  # rows of the current episode handed to the pool
        self._written: list[Row] = []  # PNG storage: the current episode's rows (state, action), in order
        self._paths: dict[str, list[str]] = {}

    # --------------------------------------------------------------------------------- RowSink
    def begin(self) -> None:
        self._rows = 0
        self._written = []
        self._paths = {camera: [] for camera in self.keys}

    def add(self, row: Row) -> None:
        if self.dataset is None:
            self._create(row)
        self._pending.append((row, self._pool.submit(self._work, self._rows, row)))
        self._rows += 1
        while len(self._pending) > self.ahead:
            self._hand_on()

    def end(self, keep: bool) -> None:
        if not keep:
            self._drain(write=False)
            if self.video and self.dataset is not None:
                self.dataset.clear_episode_buffer()
            shutil.rmtree(self.root / "png_staging", ignore_errors=True)
            return
        self._drain(write=True)
        if self.video:
            self._backpressure.check()
            self.dataset.save_episode()
            return
        count = len(self._written)
        buffer: dict = {"size": count, "task": [self.instruction] * count,
                        "episode_index": self.dataset.meta.total_episodes, "frame_index": list(range(count)),
                        "timestamp": [i / self.config.rate for i in range(count)],
                        "index": [], "task_index": [],  # filled in by save_episode
                        OBS_STATE: [row.state for row in self._written], ACTION: [row.action for row in self._written]}
        buffer |= {self.keys[camera]: paths for camera, paths in self._paths.items()}
        self.dataset.save_episode(episode_data=buffer)
        shutil.rmtree(self.root / "png_staging", ignore_errors=True)

    def discard(self) -> None:
        """Stop, and remove the part."""
        self._drain(write=False)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.dataset is not None:
            with contextlib.suppress(Exception):  # only release the encoder
                self.dataset.finalize()
        shutil.rmtree(self.root, ignore_errors=True)

    def close(self) -> None:
        """Finalise the dataset (its last episode must have ended)."""
        self._pool.shutdown(wait=True)
        if self.dataset is not None:
            self.dataset.finalize()

    # --------------------------------------------------------------------------------- inside
    def _create(self, row: Row) -> None:
        from lerobot.configs.video import RGBEncoderConfig
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        if not self.image_shapes:
            self.image_shapes = {camera: (int(frame.height), int(frame.width)) for camera, frame in row.frames.items()}
        quiet_codecs()
        encoder = None
        if self.video:
            settings = self.config.images.video
            encoder = RGBEncoderConfig(vcodec=settings.codec, preset=settings.preset, crf=settings.crf,
                                       g=settings.gop)
        self.dataset = LeRobotDataset.create(
            REPO_ID, self.config.rate, features(self.config, self.image_shapes), root=self.root,
            robot_type=self.config.profile.robot_type, use_videos=self.video, streaming_encoding=self.video,
            rgb_encoder=encoder, video_backend="pyav")
        self._backpressure = _EncoderBackpressure(self.dataset)

    def _work(self, index: int, row: Row) -> dict[str, np.ndarray] | dict[str, str]:
        """(In a pool thread) row ``index``'s images, checked; PNG storage: written, their paths."""
        images = {}
        for camera, frame in row.frames.items():
            try:
                image = _resize(frame.decode(), self.size)
            except ValueError as err:  # images.ImageError: a frame whose data is corrupt
                raise CorruptFrameError(f"camera {camera}: the frame of row {index} (tick {row.time:.3f} s) cannot "
                                        f"be decoded: {err}") from None
            if image.shape[:2] != self.image_shapes[camera]:
                raise DatasetError(
                    f"camera {camera} is {image.shape[0]}x{image.shape[1]} but the dataset's is "
                    f"{self.image_shapes[camera][0]}x{self.image_shapes[camera][1]}: set images.size to resize")
            images[camera] = image
        if self.video:
            return images
        import cv2

        paths = {}
        for camera, image in images.items():
            path = self.root / "png_staging" / camera / f"frame-{index:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(path), image[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]):
                raise DatasetError(f"could not write {path}")
            paths[camera] = str(path)
        return paths

    def _hand_on(self) -> None:
        """The oldest pending row to lerobot's writer (its images are decoded by then, or raise)."""
        row, future = self._pending.popleft()
        result = future.result()
        if self.video:
            frame = {OBS_STATE: row.state, ACTION: row.action, "task": self.instruction}
            for camera in self.keys:
                frame[self.keys[camera]] = result[camera]
            self._backpressure.wait_for_room()
            self.dataset.add_frame(frame)
        else:
            self._written.append(row)
            for camera, path in result.items():
                self._paths[camera].append(path)
        if self.progress:
            self.progress(1)

    def _drain(self, write: bool) -> None:
        """Hand on (``write``) or drop every pending row."""
        while self._pending:
            if write:
                self._hand_on()
            else:
                _, future = self._pending.popleft()
                future.cancel()
                with contextlib.suppress(Exception):
                    future.result()


class NotADatasetError(DatasetError):
    """A path where there is no LeRobot dataset at all (nothing there, a file, a folder without
    ``meta/info.json``)."""


def not_a_dataset(root: Path) -> str:
    """Why there is no LeRobot dataset at ``root`` at all ("" if there is a folder with ``meta/info.json``).

    Checked before lerobot is asked to open a local dataset: for a file it does not find, lerobot falls back to
    downloading the repo id from the Hugging Face Hub (creating the folder, and failing offline with advice
    to unset ``HF_HUB_OFFLINE``)."""
    root = Path(root)
    if not root.exists():
        return "nothing there"
    if not root.is_dir():
        return "a file, not a folder"
    if not (root / "meta" / "info.json").is_file():
        return "an empty folder" if not any(root.iterdir()) else "a folder without meta/info.json"
    return ""


def dataset_problem(root: Path) -> str:
    """Why lerobot could not open the dataset folder ``root`` from its metadata files ("" if they are there)."""
    try:
        info = json.loads((Path(root) / "meta" / "info.json").read_text())
        if not isinstance(info, dict) or not {"codebase_version", "fps", "features"} <= info.keys():
            raise ValueError("no codebase_version, fps and features")
    except (OSError, ValueError) as err:
        return f"meta/info.json is not LeRobot dataset info ({' '.join(str(err).split())})"
    if info.get("total_tasks", 0) and not (Path(root) / "meta" / "tasks.parquet").is_file():
        return "meta/tasks.parquet is missing: the dataset is incomplete"
    if info.get("total_episodes", 0) and not any((Path(root) / "meta" / "episodes").rglob("*.parquet")):
        return "meta/episodes/ has no parquet files: the dataset is incomplete"
    missing = missing_files(Path(root), info)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        return f"{missing[0]} is missing{more} (the episodes' index lists it): the dataset is incomplete"
    return ""


def missing_files(root: Path, info: dict) -> list[str]:
    """The data and video files (relative to ``root``) that ``meta/episodes`` says the episodes are in and
    that are not there, from lerobot v3's ``data_path``/``video_path`` templates and each episode's
    ``data/...`` and ``videos/<key>/...`` chunk and file indices. Empty when the index cannot be read (lerobot
    then says why)."""
    import pyarrow.parquet as pq

    templates = {"data": info.get("data_path")}
    templates |= {f"videos/{key}": info.get("video_path") for key, spec in (info.get("features") or {}).items()
                  if isinstance(spec, dict) and spec.get("dtype") == "video"}
    wanted: set[str] = set()
    try:
        for part in sorted((root / "meta" / "episodes").rglob("*.parquet")):
            table = pq.read_table(part).to_pydict()
            for prefix, template in templates.items():
                chunks, files = table.get(f"{prefix}/chunk_index"), table.get(f"{prefix}/file_index")
                if not template or chunks is None or files is None:
                    continue
                key = prefix.removeprefix("videos/")
                wanted |= {template.format(chunk_index=c, file_index=f, video_key=key) for c, f in zip(chunks, files,
                                                                                                       strict=True)}
    except Exception:  # an unreadable index is lerobot's to report
        return []
    return sorted(name for name in wanted if not (root / name).is_file())


def open_error(root: Path, err: BaseException) -> str:
    """One line for lerobot failing to open the local dataset at ``root`` with ``err``."""
    if type(err).__module__.startswith("huggingface_hub"):  # it looked for a missing file on the Hub
        return (f"lerobot cannot open {root}: a file it needs is missing (it then looked for the dataset on the "
                f"Hugging Face Hub: {type(err).__name__})")
    text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return f"lerobot cannot open {root}: {' '.join(text.split())}"


def check_dataset(root: Path) -> None:
    """:class:`NotADatasetError` if there is no dataset at ``root`` (:func:`not_a_dataset`), :class:`DatasetError`
    if its metadata files are not all there (:func:`dataset_problem`); lerobot is not asked."""
    reason = not_a_dataset(root)
    if reason:
        raise NotADatasetError(f"no dataset at {root} ({reason})")
    problem = dataset_problem(root)
    if problem:
        raise DatasetError(f"lerobot cannot open {root}: {problem}")


def open_metadata(root: Path):
    """lerobot's ``LeRobotDatasetMetadata`` of the dataset at ``root``, local only: :class:`NotADatasetError`
    if there is none (:func:`check_dataset`; lerobot is then not asked, so nothing is created or downloaded),
    :class:`DatasetError` (one line) if lerobot cannot open it."""
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata

    check_dataset(root)
    try:
        return LeRobotDatasetMetadata(REPO_ID, root=root)
    except Exception as err:
        raise DatasetError(open_error(root, err)) from None


def dataset_tasks(root: Path) -> list[str]:
    """The task instructions of the dataset at ``root`` (:func:`open_metadata`), in task index order."""
    tasks = open_metadata(root).tasks
    if tasks is None:
        return []
    return [str(t) for t, _ in sorted(zip(tasks.index, tasks["task_index"], strict=True), key=lambda p: int(p[1]))]


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


def images_in_parquet(root: Path) -> bool:
    """Whether the dataset at ``root`` keeps camera images in its parquet files (PNG storage, lerobot's
    ``image`` features) rather than in videos."""
    info = json.loads((Path(root) / "meta" / "info.json").read_text())
    return any(isinstance(ft, dict) and ft.get("dtype") == "image" for ft in info.get("features", {}).values())


def assemble(output: Path, parts: list[Path], finish: Callable[[Path], None]) -> None:
    """Replace ``output`` by ``output`` (if it exists) + ``parts``, in that order, atomically.

    ``finish(tmp)`` runs on the assembled copy before the swap (to add the run report). Datasets with images in
    their parquet files keep one data file per source (lerobot's ``concatenate_data=False``): lerobot 0.6 packs a
    source into the current file by reading that file back and embedding every image in it again, so packing
    N parts costs O(N^2) image embeddings (80 s of a 20-bag conversion of 64x64 PNG demonstrations, against
    ~20 s for reading, aligning and writing the bags). Rows, frames and statistics are the same either way;
    video datasets (their parquet files hold no images) are packed as before.
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
        aggregate_datasets([REPO_ID] * len(sources), REPO_ID, roots=sources, aggr_root=tmp,
                           concatenate_data=not images_in_parquet(sources[-1]))
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
