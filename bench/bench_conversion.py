"""Rosbag -> LeRobot conversion: speed (frames written per second, ratio to real time), speed-up per worker
count, and peak memory against the bag's length.

A generated 60 s Kuavo ROS 1 bag (three 30 Hz 640x480 camera-like JPEG streams, 500 Hz
/sensors_data_raw, claw state, /kuavo_arm_traj, claw command) is converted to a 10 fps dataset
with the shipped Kuavo config, through the converter's Python API (``convert``), in these cases:

1. ``video``: the 60 s bag, video storage (h264 MP4 with the config's preset), each worker count;
2. ``png``: the 60 s bag, PNG storage (images inside the parquet files), each worker count;
3. ``split``: the same 60 s split into four 15 s bags, video storage, each worker count;
4. ``floor``: the per-camera-frame work any conversion of the 60 s bag to the same video dataset does, measured
   apart on one thread (CPU time): JPEG decoding, and the steps of lerobot's streaming encoder thread (PIL image ->
   PyAV frame, x264 with the config's settings, lerobot's running image statistics); plus reading and aligning
   the bag (our code). Compared with the CPU time that 10x real time leaves on the machine's cores;
5. ``memory``: bags of 15, 60 and 240 s, with JPEG cameras (ROS 1, as above) and with raw
   ``sensor_msgs/Image`` rgb8 cameras (a ROS 2 MCAP bag, ``--raw-size``, default 320x240 to keep the
   240 s bag at 5 GB on disk), each converted to video in a fresh process with one worker: that
   process's peak RSS (``ru_maxrss``) against the bag's length, after the imports and at the end.

One bag runs in one process whatever ``workers`` says, so only case 3 can gain from more workers (worker
counts: 1, 2, 4, ... up to the cores, at least 1 and 2). Each run starts from an empty output folder and is
timed end to end (bag hashing, reading, alignment, JPEG decoding, encoding, assembly); runs are interleaved and
the median taken (the slow PNG case once by default). The ratio to real time is recorded seconds / wall
seconds; the goal is at least 10x for the 60 s bag to video. Memory goal: the 240 s bag's peak within 10% of
the 15 s bag's. Also recorded: CPU use, peak memory, and the video frames lerobot's streaming encoder dropped
(it drops rather than waits when its queue stays full). The bags are generated once into
``.cache/bench/conversion`` and reused.

Usage: python bench/bench_conversion.py [--repeats N] [--png-repeats N] [--cases video png split floor memory]
       [--raw-size HxW]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import hashlib
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # lerobot's aggregation bars (inherited by the spawned workers)
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # the datasets library's "Map" bars
sys.path.insert(0, str(Path(__file__).resolve().parent))

import av
import psutil
from common import CACHE, machine, save

from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.data import synthetic
from kuavo_smolvla_ros.data.convert import convert
from kuavo_smolvla_ros.data.synthetic import SyntheticBag, write_synthetic_bag

SECONDS = 60.0
SPLIT = 4
CAMERA_HZ = 30.0
SENSORS_HZ = 500.0
IMAGE_SIZE = (480, 640)
FPS = 10
GOAL = 10.0
#: Worker counts: 1, 2, 4, ... up to the cores (at least 1 and 2).
WORKERS = tuple(w for w in (1, 2, 4, 8, 16, 32) if w <= max(2, os.cpu_count() or 1))
#: Bag lengths (s) of the memory case, and the goal: the longest bag's peak RSS within this of the shortest's.
MEMORY_SECONDS = (15.0, 60.0, 240.0)
MEMORY_GOAL = 0.10
TASK = "moving_grasp"
#: The generated bags, in a folder named after the generator's source (a changed generator makes new bags).
BAGS = CACHE / "conversion" / f"gen-{hashlib.sha256(Path(synthetic.__file__).read_bytes()).hexdigest()[:10]}"
#: case -> (storage, bag set, what to expect from a second worker)
CASES = {
    "video": ("video", "single", "one bag = one episode: workers=2 runs it in one process, no gain expected"),
    "png": ("png", "single", "one bag = one episode: workers=2 runs it in one process, no gain expected"),
    "split": ("video", "split", f"{SPLIT} bags: workers=N converts N bags at a time in worker processes"),
}
ALL_CASES = [*CASES, "floor", "memory"]
#: Camera frames per camera timed by the floor case (consecutive, from the middle of the bag).
FLOOR_FRAMES = 150


def quiet() -> None:
    """Keep FFmpeg's encoder statistics and lerobot's info lines out of the table (warnings still show).

    Runs at import, so the worker processes (spawned: they import this module) are quiet too. libav's own
    level matters as well as PyAV's: lerobot's encoder threads restore FFmpeg's default log callback.
    """
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_libav_level(av.logging.ERROR)
    for name in ("lerobot", "datasets", "huggingface_hub", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # torchcodec cannot load with this FFmpeg; lerobot says so at length and falls back to PyAV
    logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)
    # lerobot re-enables the datasets bars after a step; HF_DATASETS_DISABLE_PROGRESS_BARS wins, with a warning
    warnings.filterwarnings("ignore", message="Cannot enable progress bars")


quiet()


def size_of(path: Path) -> int:
    """Bytes of a bag file or a ROS 2 bag folder."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def make_bag(path: Path, seconds: float, start: float, seed: int, raw_size: tuple[int, int] | None = None) -> None:
    """Write one generated bag at ``path`` unless it is there (written under a temporary name first); with
    ``raw_size`` (height, width): a ROS 2 MCAP bag with raw rgb8 cameras of that size."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")  # another run may be generating it too
    shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    begin = time.perf_counter()
    cameras = load_profile("kuavo4pro").camera_names
    write_synthetic_bag(tmp, "mcap" if raw_size else "ros1", SyntheticBag(
        seconds=seconds, start=start, camera_hz=CAMERA_HZ, sensors_hz=SENSORS_HZ, image_size=raw_size or IMAGE_SIZE,
        textured=True, seed=seed, raw_encodings={c: "rgb8" for c in cameras} if raw_size else {}))
    os.replace(tmp, path)
    print(f"  generated {path.relative_to(CACHE)} ({size_of(path) / 1e6:.0f} MB) "
          f"in {time.perf_counter() - begin:.0f} s", flush=True)


def bag_sets() -> dict[str, list[Path]]:
    """The single 60 s bag and the 60 s split in 15 s bags (distinct start times, so distinct hashes)."""
    single = BAGS / f"single_{SECONDS:.0f}s.bag"
    part_s = SECONDS / SPLIT
    split = [BAGS / f"split_{SPLIT}x{part_s:.0f}s" / f"part{i}.bag" for i in range(SPLIT)]
    if not single.is_file() or not all(p.is_file() for p in split):
        print(f"generating the bags in {BAGS} (once, about a minute) ...", flush=True)
        for stale in BAGS.parent.glob("*"):  # bags of an older generator, and loose files
            if stale.is_dir() and stale != BAGS:
                shutil.rmtree(stale)
            elif stale.is_file():
                stale.unlink()
    make_bag(single, SECONDS, 100.0, seed=0)
    for i, path in enumerate(split):
        make_bag(path, part_s, 100.0 + i * part_s, seed=0)
    return {"single": [single], "split": split}


def memory_bags(raw_size: tuple[int, int]) -> dict[tuple[str, float], Path]:
    """(cameras, seconds) -> a generated bag: JPEG (ROS 1) and raw rgb8 (ROS 2 MCAP) of each memory length."""
    bags = {}
    for seconds in MEMORY_SECONDS:
        bags[("jpeg", seconds)] = BAGS / "memory" / f"jpeg_{seconds:.0f}s.bag"
        bags[("raw", seconds)] = BAGS / "memory" / f"raw{raw_size[1]}x{raw_size[0]}_{seconds:.0f}s"
    for (kind, seconds), path in bags.items():
        make_bag(path, seconds, 100.0, seed=0, raw_size=raw_size if kind == "raw" else None)
    return bags


def measure_child(bag: Path, output: Path) -> None:
    """(In a fresh process) convert ``bag`` to video with one worker; print its RSS figures as one JSON line."""
    warm_up()
    ready = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    result = convert([bag], output, task=TASK, workers=1, storage="video", progress=False)
    wall = time.perf_counter() - start
    bad = [f"{r.status} {r.reason}" for r in result.results if r.status != "converted"]
    end = resource.getrusage(resource.RUSAGE_SELF)
    frames = sum(e["frames"] for r in result.results for e in r.episodes)
    shutil.rmtree(output, ignore_errors=True)
    cpu = end.ru_utime + end.ru_stime - ready.ru_utime - ready.ru_stime
    print(json.dumps({"ready_mb": ready.ru_maxrss / 1e3, "peak_mb": end.ru_maxrss / 1e3, "wall_s": wall,
                      "cpu_s": cpu, "frames": frames, "failed": bad}), flush=True)


def run_memory(bags: dict[tuple[str, float], Path], work: Path) -> list[dict]:
    """Each memory bag converted in a fresh process (``--measure``); its peak RSS and timing."""
    rows = []
    for (kind, seconds), bag in bags.items():
        output = work / f"memory_{kind}_{seconds:.0f}"
        done = subprocess.run([sys.executable, __file__, "--measure", str(bag), str(output)], capture_output=True,
                              text=True, timeout=3600, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            raise RuntimeError(f"measuring {bag} failed ({done.returncode}): {done.stderr[-2000:]}")
        sample = json.loads(lines[-1])
        if sample["failed"]:
            raise RuntimeError(f"{bag} did not convert: {sample['failed']}")
        rows.append({"cameras": kind, "bag_seconds": seconds, "bag_mb": size_of(bag) / 1e6, **sample,
                     "realtime_ratio": seconds / sample["wall_s"]})
        print(f"  memory {kind:4s} {seconds:4.0f} s: {sample['wall_s']:6.1f} s (CPU {sample['cpu_s']:.1f} s), "
              f"{sample['frames']} frames, RSS after "
              f"imports {sample['ready_mb']:.0f} MB, peak {sample['peak_mb']:.0f} MB", flush=True)
    for row in rows:
        base = next(r for r in rows if r["cameras"] == row["cameras"] and r["bag_seconds"] == MEMORY_SECONDS[0])
        row["peak_vs_shortest"] = row["peak_mb"] / base["peak_mb"] - 1
    return rows


class PeakRss:
    """Peak resident memory of this process (and its children with ``children``) while in the block,
    sampled every 0.2 s (cheap: listing children walks /proc, so only when there are workers)."""

    def __init__(self, children: bool = False):
        self.peak = 0
        self.children = children
        self._me = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> int:
        total = self._me.memory_info().rss
        for child in self._me.children(recursive=True) if self.children else []:
            with contextlib.suppress(psutil.Error):  # a child that just exited
                total += child.memory_info().rss
        return total

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self._sample())

    def __enter__(self) -> PeakRss:
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def video_frames(output: Path) -> dict[str, int]:
    """Frames in each camera's MP4 files (from the container headers)."""
    counts: dict[str, int] = {}
    for path in sorted((output / "videos").glob("*/*/*.mp4")):
        with av.open(str(path)) as container:
            camera = path.parent.parent.name.rsplit(".", 1)[-1]
            counts[camera] = counts.get(camera, 0) + container.streams.video[0].frames
    return counts


def release_memory() -> float:
    """Give freed heap back to the system between runs (glibc keeps it otherwise); returns the RSS in MB after."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return psutil.Process().memory_info().rss / 1e6


def cpu_seconds() -> float:
    """CPU time of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_once(bags: list[Path], storage: str, workers: int, output: Path) -> dict:
    shutil.rmtree(output, ignore_errors=True)
    start_rss = release_memory()
    with PeakRss(children=workers > 1 and len(bags) > 1) as rss:
        cpu = cpu_seconds()
        start = time.perf_counter()
        result = convert(bags, output, task=TASK, workers=workers, storage=storage, progress=False)
        wall = time.perf_counter() - start
        cpu = cpu_seconds() - cpu
    bad = [f"{r.source}: {r.status} {r.reason}" for r in result.results if r.status != "converted"]
    if bad:
        raise RuntimeError(f"conversion did not convert every bag: {bad}")
    size = sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
    frames = sum(r.episode["frames"] for r in result.results)
    # lerobot's streaming encoder drops a frame (with a warning) when its queue stays full for 0.1 s: check
    in_videos = video_frames(output) if storage == "video" else {}
    missing = {camera: frames - n for camera, n in in_videos.items() if n != frames}
    shutil.rmtree(output, ignore_errors=True)
    return {"wall_s": wall, "frames": frames, "episodes": len(result.results), "dataset_mb": size / 1e6,
            "start_rss_mb": start_rss, "peak_rss_mb": rss.peak / 1e6, "cpu_s": cpu, "video_frames_missing": missing,
            "per_bag_s": [r.episode["conversion_s"] for r in result.results]}


def warm_up() -> None:
    """Import lerobot, PyAV and the bag reader in this process first, so the first timed run pays no imports."""
    from lerobot.datasets import aggregate, lerobot_dataset  # noqa: F401

    from kuavo_smolvla_ros.data.bags import kuavo_typestore

    kuavo_typestore(True)


def run_floor(bag: Path) -> dict:
    """The floor case (see the module doc): CPU seconds per camera frame of each fixed step, and what they add up
    to for the whole bag against the CPU time 10x real time allows on this machine's cores."""
    from fractions import Fraction

    from lerobot.datasets.compute_stats import RunningQuantileStats, auto_downsample_height_width
    from PIL import Image

    from kuavo_smolvla_ros.data.align import build_episodes
    from kuavo_smolvla_ros.data.config import load_config

    config = load_config(None)
    start = time.process_time()
    built = build_episodes(bag, config)
    read_s = time.process_time() - start
    frames = {camera: [f for e in built.episodes for f in e.frames[camera]] for camera in config.profile.camera_names}
    total_frames = sum(len(v) for v in frames.values())
    steps = dict.fromkeys(("jpeg_decode", "to_av_frame", "x264", "image_stats"), 0.0)
    timed = 0
    video = config.images.video
    for camera, all_frames in frames.items():
        first = max(0, (len(all_frames) - FLOOR_FRAMES) // 2)  # consecutive frames, as the encoder gets them
        picked = all_frames[first: first + FLOOR_FRAMES]
        container = av.open(str(BAGS / f"floor_{os.getpid()}_{camera}.mp4"), "w")
        try:
            stream = container.add_stream(video.codec, FPS, options={"preset": str(video.preset), "crf": str(video.crf),
                                                                      "g": str(video.gop), "threads": "1"})
            stats = RunningQuantileStats()
            for number, frame in enumerate(picked):
                t0 = time.process_time()
                image = frame.decode()
                t1 = time.process_time()
                av_frame = av.VideoFrame.from_image(Image.fromarray(image))  # as lerobot's encoder thread does
                av_frame.pts, av_frame.time_base = number, Fraction(1, FPS)
                if number == 0:
                    stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
                t2 = time.process_time()
                container.mux(stream.encode(av_frame))
                t3 = time.process_time()
                small = auto_downsample_height_width(image.transpose(2, 0, 1))
                stats.update(small.transpose(1, 2, 0).reshape(-1, small.shape[0]))
                t4 = time.process_time()
                for key, spent in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    steps[key] += spent
                timed += 1
            t0 = time.process_time()
            container.mux(stream.encode())  # the frames x264 still holds
            steps["x264"] += time.process_time() - t0
        finally:
            container.close()
            (BAGS / f"floor_{os.getpid()}_{camera}.mp4").unlink(missing_ok=True)
    per_frame_ms = {key: 1000 * value / timed for key, value in steps.items()}
    frame_work_s = sum(per_frame_ms.values()) / 1000 * total_frames
    budget_s = SECONDS / GOAL * (os.cpu_count() or 1)
    return {"bag_seconds": SECONDS, "camera_frames": total_frames, "timed_frames": timed,
            "per_frame_ms": per_frame_ms, "frame_work_cpu_s": frame_work_s, "read_align_cpu_s": read_s,
            "total_cpu_s": frame_work_s + read_s, "cores": os.cpu_count(), "goal_cpu_budget_s": budget_s,
            "ceiling_realtime_ratio": SECONDS * (os.cpu_count() or 1) / (frame_work_s + read_s)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per case and worker count")
    parser.add_argument("--png-repeats", type=int, default=1, help="timed runs of the PNG case (the slow one)")
    parser.add_argument("--cases", nargs="+", default=ALL_CASES, choices=ALL_CASES)
    parser.add_argument("--raw-size", default="240x320", help="HxW of the raw cameras of the memory case")
    parser.add_argument("--measure", nargs=2, metavar=("BAG", "OUTPUT"), help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.measure:
        measure_child(Path(args.measure[0]), Path(args.measure[1]))
        return 0
    raw_size = tuple(int(v) for v in args.raw_size.lower().split("x"))
    total_start = time.perf_counter()
    print(f"machine: {machine()}")
    speed_cases = [case for case in args.cases if case in CASES]
    sets = bag_sets() if speed_cases else {}
    mem_bags = memory_bags(raw_size) if "memory" in args.cases else {}
    floor = run_floor(sets["single"][0] if sets else bag_sets()["single"][0]) if "floor" in args.cases else {}
    warm_up()
    work = Path(tempfile.mkdtemp(prefix="out-", dir=BAGS))  # this run's own: concurrent runs must not collide
    runs = [(case, workers) for case in speed_cases for workers in WORKERS]
    samples: dict[tuple[str, int], list[dict]] = {run: [] for run in runs}
    rounds = max(args.repeats, args.png_repeats if "png" in args.cases else 0) if runs else 0
    memory: list[dict] = []
    try:
        if mem_bags:
            memory = run_memory(mem_bags, work)
        for repeat in range(rounds):  # interleaved: every case and worker count once per round
            for case, workers in runs:
                storage, bag_set, _ = CASES[case]
                if repeat >= (args.png_repeats if case == "png" else args.repeats):
                    continue
                sample = run_once(sets[bag_set], storage, workers, work / f"{case}_w{workers}")
                samples[(case, workers)].append(sample)
                print(f"  round {repeat + 1}/{rounds} {case:5s} workers={workers}: {sample['wall_s']:6.1f} s, "
                      f"{sample['frames']} frames, CPU {sample['cpu_s'] / sample['wall_s']:.0%}, "
                      f"RSS {sample['start_rss_mb']:.0f} -> peak {sample['peak_rss_mb']:.0f} MB"
                      + (f", FRAMES MISSING from the videos: {sample['video_frames_missing']}"
                         if sample["video_frames_missing"] else ""), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for case, workers in runs:
        storage, bag_set, note = CASES[case]
        bags = sets[bag_set]
        walls = [s["wall_s"] for s in samples[(case, workers)]]
        wall = statistics.median(walls)
        frames = samples[(case, workers)][0]["frames"]
        ratio = SECONDS / wall
        rows.append({
            "case": case, "storage": storage, "workers": workers, "bags": len(bags),
            "bag_seconds": SECONDS / len(bags), "bag_mb": sum(p.stat().st_size for p in bags) / 1e6,
            "recorded_s": SECONDS, "frames": frames, "wall_s": wall, "walls_s": walls,
            "frames_per_s": frames / wall, "camera_images_per_s": 3 * frames / wall,
            "realtime_ratio": ratio, "meets_goal": ratio >= GOAL,
            "dataset_mb": statistics.median(s["dataset_mb"] for s in samples[(case, workers)]),
            "peak_rss_mb": max(s["peak_rss_mb"] for s in samples[(case, workers)]),
            "start_rss_mb": min(s["start_rss_mb"] for s in samples[(case, workers)]),
            "cpu_utilisation": statistics.median(s["cpu_s"] / s["wall_s"] for s in samples[(case, workers)]),
            "repeats": len(walls),
            "video_frames_missing": [s["video_frames_missing"] for s in samples[(case, workers)]],
            "video_frames_lost_max": max(sum(s["video_frames_missing"].values()) for s in samples[(case, workers)]),
            "per_bag_s": samples[(case, workers)][-1]["per_bag_s"], "note": note,
        })

    if rows:
        print(f"\n{SECONDS:.0f} s of recording, 3 cameras {IMAGE_SIZE[1]}x{IMAGE_SIZE[0]} JPEG at {CAMERA_HZ:.0f} Hz, "
              f"-> {FPS} fps dataset; median of n runs (goal: >= {GOAL:.0f}x real time for the 60 s bag to video)")
        print(f"{'case':6s} {'storage':7s} {'bags':>9s} {'bag MB':>7s} {'workers':>7s} {'n':>2s} {'wall s':>7s} "
              f"{'frames':>6s} {'frames/s':>8s} {'x real':>6s} {'CPU':>5s} {'out MB':>6s} {'peak RSS MB':>11s} "
              f"{'lost':>4s}")
        for r in rows:
            print(f"{r['case']:6s} {r['storage']:7s} {r['bags']:>2d} x {r['bag_seconds']:3.0f} s {r['bag_mb']:7.0f} "
                  f"{r['workers']:>7d} {r['repeats']:>2d} {r['wall_s']:7.1f} {r['frames']:>6d} "
                  f"{r['frames_per_s']:8.1f} {r['realtime_ratio']:6.2f} {r['cpu_utilisation']:5.0%} "
                  f"{r['dataset_mb']:6.0f} {r['peak_rss_mb']:11.0f} {r['video_frames_lost_max']:4d}")
        print("frames: dataset frames (3 camera images each); x real: recorded s / wall s; CPU: CPU time / wall time "
              f"({os.cpu_count()} cores; of this process only where several bags go to worker processes: they are "
              "forked by the converter's fork server, not by this process); out MB: the dataset; "
              "peak RSS: this process (+ workers), from about "
              f"{min(r['start_rss_mb'] for r in rows):.0f} MB before a run; lost: most video frames missing in a run "
              "(lerobot's streaming encoder drops frames when its queue stays full for 0.1 s)")
        for case in speed_cases:
            one = next(r for r in rows if r["case"] == case and r["workers"] == 1)
            for r in rows:
                if r["case"] == case and r["workers"] > 1:
                    r["speedup"] = one["wall_s"] / r["wall_s"]
                    print(f"{case:6s} workers {r['workers']} vs 1: {r['speedup']:.2f}x speed-up ({one['note']})")
    if memory:
        print(f"\npeak RSS against bag length (one bag to video, one worker, a fresh process each; goal: the "
              f"{MEMORY_SECONDS[-1]:.0f} s bag's peak within {MEMORY_GOAL:.0%} of the {MEMORY_SECONDS[0]:.0f} s bag's)")
        print(f"{'cameras':18s} {'bag s':>5s} {'bag MB':>7s} {'wall s':>7s} {'CPU s':>6s} {'x real':>6s} "
              f"{'frames':>6s} {'RSS ready MB':>12s} {'peak MB':>8s} {'vs shortest':>11s}")
        for m in memory:
            cameras = "3 JPEG 640x480" if m["cameras"] == "jpeg" else f"3 raw {raw_size[1]}x{raw_size[0]}"
            print(f"{cameras:18s} {m['bag_seconds']:5.0f} {m['bag_mb']:7.0f} {m['wall_s']:7.1f} {m['cpu_s']:6.1f} "
                  f"{m['realtime_ratio']:6.2f} {m['frames']:>6d} {m['ready_mb']:12.0f} {m['peak_mb']:8.0f} "
                  f"{m['peak_vs_shortest']:+11.1%}")
        print("CPU s: CPU time of the conversion (all threads); RSS ready: the process's peak after importing "
              "lerobot and the converter, before converting")
    if floor:
        steps = ", ".join(f"{k} {v:.2f}" for k, v in floor["per_frame_ms"].items())
        print(f"\nper camera frame, one thread, CPU ms ({floor['timed_frames']} frames timed): {steps}")
        print(f"the 60 s bag: {floor['camera_frames']} camera frames x those = {floor['frame_work_cpu_s']:.1f} CPU s, "
              f"+ reading and aligning {floor['read_align_cpu_s']:.1f} CPU s = {floor['total_cpu_s']:.1f} CPU s; "
              f"10x real time allows {floor['goal_cpu_budget_s']:.1f} CPU s on {floor['cores']} cores: ceiling "
              f"{floor['ceiling_realtime_ratio']:.1f}x real time with every core busy")
    total = time.perf_counter() - total_start
    speed = [r["realtime_ratio"] for r in rows if r["case"] == "video"]
    longest = [m for m in memory if m["bag_seconds"] == MEMORY_SECONDS[-1]]
    path = save("conversion", {
        "machine": machine(), "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "recorded_s": SECONDS, "camera_hz": CAMERA_HZ, "sensors_hz": SENSORS_HZ,
        "image": f"{IMAGE_SIZE[1]}x{IMAGE_SIZE[0]}", "raw_image": f"{raw_size[1]}x{raw_size[0]}", "fps": FPS,
        "repeats": args.repeats, "png_repeats": args.png_repeats, "goal_realtime_ratio": GOAL,
        "goal_memory_growth": MEMORY_GOAL, "rows": rows, "memory": memory, "floor": floor,
        "total_runtime_s": total,
    })
    print(f"results: {path}  (total {total:.0f} s)")
    if speed:
        print(f"speed goal (>= {GOAL:.0f}x real time, 60 s bag to video): "
              f"{'met' if max(speed) >= GOAL else 'NOT met'} ({max(speed):.2f}x)")
    if longest:
        worst = max(m["peak_vs_shortest"] for m in longest)
        print(f"memory goal ({MEMORY_SECONDS[-1]:.0f} s bag within {MEMORY_GOAL:.0%} of {MEMORY_SECONDS[0]:.0f} s): "
              f"{'met' if worst <= MEMORY_GOAL else 'NOT met'} (worst {worst:+.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
