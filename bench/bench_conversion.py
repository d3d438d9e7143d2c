"""Rosbag -> LeRobot conversion speed: frames written per second and the ratio to real time.

A generated 60 s Kuavo ROS 1 bag (three 30 Hz 640x480 camera-like JPEG streams, 500 Hz
/sensors_data_raw, claw state, /kuavo_arm_traj, claw command) is converted to a 10 fps dataset
with the shipped Kuavo config, through the converter's Python API (``convert``), in three cases:

1. the 60 s bag, video storage (h264 MP4 with the config's preset), ``workers`` 1 and 2;
2. the 60 s bag, PNG storage (images inside the parquet files), ``workers`` 1 and 2;
3. the same 60 s split into four 15 s bags, video storage, ``workers`` 1 and 2.

One bag is one episode and runs in one process whatever ``workers`` says, so only case 3 can gain from
a second worker. Each run starts from an empty output folder and is timed end to end (bag hashing,
reading, alignment, JPEG decoding, encoding, assembly); runs are interleaved and the median taken
(the slow PNG case once by default). The ratio to real time is recorded seconds / wall
seconds; the goal is at least 5x. Also recorded: CPU use, peak memory, and the video frames lerobot's
streaming encoder dropped (it drops rather than waits when its queue stays full).
The bags are generated once into ``.cache/bench/conversion`` and reused.

Usage: python bench/bench_conversion.py [--repeats N] [--png-repeats N] [--cases video png split]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import hashlib
import logging
import os
import shutil
import statistics
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

from kuavo_smolvla_ros.data import synthetic
from kuavo_smolvla_ros.data.convert import convert
from kuavo_smolvla_ros.data.synthetic import SyntheticBag, write_synthetic_bag

SECONDS = 60.0
SPLIT = 4
CAMERA_HZ = 30.0
SENSORS_HZ = 500.0
IMAGE_SIZE = (480, 640)
FPS = 10
GOAL = 5.0
WORKERS = (1, 2)
TASK = "moving_grasp"
#: The generated bags, in a folder named after the generator's source (a changed generator makes new bags).
BAGS = CACHE / "conversion" / f"gen-{hashlib.sha256(Path(synthetic.__file__).read_bytes()).hexdigest()[:10]}"
#: case -> (storage, bag set, what to expect from a second worker)
CASES = {
    "video": ("video", "single", "one bag = one episode: workers=2 runs it in one process, no gain expected"),
    "png": ("png", "single", "one bag = one episode: workers=2 runs it in one process, no gain expected"),
    "split": ("video", "split", f"{SPLIT} bags: workers=2 converts two bags at a time in spawned processes"),
}


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


def make_bag(path: Path, seconds: float, start: float, seed: int) -> None:
    """Write one generated bag at ``path`` unless it is there (written under a temporary name first)."""
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.bag")  # another run may be generating it too
    tmp.unlink(missing_ok=True)
    begin = time.perf_counter()
    write_synthetic_bag(tmp, "ros1", SyntheticBag(
        seconds=seconds, start=start, camera_hz=CAMERA_HZ, sensors_hz=SENSORS_HZ, image_size=IMAGE_SIZE,
        textured=True, seed=seed))
    os.replace(tmp, path)
    print(f"  generated {path.relative_to(CACHE)} ({path.stat().st_size / 1e6:.0f} MB) "
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per case and worker count")
    parser.add_argument("--png-repeats", type=int, default=1, help="timed runs of the PNG case (the slow one)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    total_start = time.perf_counter()
    print(f"machine: {machine()}")
    sets = bag_sets()
    warm_up()
    work = Path(tempfile.mkdtemp(prefix="out-", dir=BAGS))  # this run's own: concurrent runs must not collide
    runs = [(case, workers) for case in args.cases for workers in WORKERS]
    samples: dict[tuple[str, int], list[dict]] = {run: [] for run in runs}
    rounds = max(args.repeats, args.png_repeats if "png" in args.cases else 0)
    try:
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

    print(f"\n{SECONDS:.0f} s of recording, 3 cameras {IMAGE_SIZE[1]}x{IMAGE_SIZE[0]} JPEG at {CAMERA_HZ:.0f} Hz, "
          f"-> {FPS} fps dataset; median of n runs (goal: >= {GOAL:.0f}x real time)")
    print(f"{'case':6s} {'storage':7s} {'bags':>9s} {'bag MB':>7s} {'workers':>7s} {'n':>2s} {'wall s':>7s} "
          f"{'frames':>6s} {'frames/s':>8s} {'x real':>6s} {'goal':>4s} {'CPU':>5s} {'out MB':>6s} "
          f"{'peak RSS MB':>11s} {'lost':>4s}")
    for r in rows:
        print(f"{r['case']:6s} {r['storage']:7s} {r['bags']:>2d} x {r['bag_seconds']:3.0f} s {r['bag_mb']:7.0f} "
              f"{r['workers']:>7d} {r['repeats']:>2d} {r['wall_s']:7.1f} {r['frames']:>6d} {r['frames_per_s']:8.1f} "
              f"{r['realtime_ratio']:6.2f} {'met' if r['meets_goal'] else 'NO':>4s} {r['cpu_utilisation']:5.0%} "
              f"{r['dataset_mb']:6.0f} {r['peak_rss_mb']:11.0f} {r['video_frames_lost_max']:4d}")
    print("frames: dataset frames (3 camera images each); x real: recorded s / wall s; CPU: CPU time / wall time "
          f"({os.cpu_count()} cores); out MB: the dataset; peak RSS: this process (+ workers), from about "
          f"{min(r['start_rss_mb'] for r in rows):.0f} MB before a run; lost: most video frames missing in a run "
          "(lerobot's streaming encoder drops frames when its queue stays full for 0.1 s)")
    for case in args.cases:
        one = next(r for r in rows if r["case"] == case and r["workers"] == 1)
        two = next(r for r in rows if r["case"] == case and r["workers"] == 2)
        print(f"{case:6s} workers 2 vs 1: {one['wall_s'] / two['wall_s']:.2f}x speed-up ({one['note']})")
    total = time.perf_counter() - total_start
    path = save("conversion", {
        "machine": machine(), "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "recorded_s": SECONDS, "camera_hz": CAMERA_HZ, "sensors_hz": SENSORS_HZ,
        "image": f"{IMAGE_SIZE[1]}x{IMAGE_SIZE[0]}", "fps": FPS, "repeats": args.repeats,
        "png_repeats": args.png_repeats, "goal_realtime_ratio": GOAL, "rows": rows, "total_runtime_s": total,
    })
    met = all(r["meets_goal"] for r in rows)
    print(f"results: {path}  (total {total:.0f} s)")
    print(f"goal (>= {GOAL:.0f}x real time): {'met' if met else 'NOT met'} "
          f"(worst {min(r['realtime_ratio'] for r in rows):.2f}x, best {max(r['realtime_ratio'] for r in rows):.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
