"""Convert Kuavo bags to one LeRobot dataset: bag search, per-bag parts (optionally in worker processes),
resume, the run report, and atomic assembly.

Whatever is wrong with a bag is that bag's failure, with its own first cause, never the run's: a bag that
cannot be found, hashed, opened or read, whose messages are all refused, or whose conversion process dies
(worker processes that die are replaced, their bags converted again one process each) is reported as
``failed`` with its reason; the other bags are converted. A bag cut at breaks in time becomes several
episodes, each listed in the report with its source and piece. An interrupt (Ctrl-C) raises
:class:`ConversionInterrupted` (a ``KeyboardInterrupt``) saying how many bags were done: their parts are kept
for ``--resume``, worker processes are stopped, and a bag cut short leaves no part record (``episode.json``,
written last), so nothing half-written is ever taken as finished.

Python API::

    from kuavo_smolvla_ros.data.convert import convert
    result = convert(["bags/"], "datasets/moving_grasp", task="moving_grasp", workers=2)
    print(result.summary)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import shutil
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kuavo_smolvla_ros.atomic import folder_problem, write_json
from kuavo_smolvla_ros.contract.streams import StreamDecoder
from kuavo_smolvla_ros.data import dataset as lerobot_io
from kuavo_smolvla_ros.data.align import stream_episodes
from kuavo_smolvla_ros.data.bags import BagError, find_bags, read_messages
from kuavo_smolvla_ros.data.config import ConversionConfig, config_from_dict, load_config
from kuavo_smolvla_ros.data.episode import BagEpisodes, Episode, describe_error
from kuavo_smolvla_ros.tasks import Task, default_catalog

REPORT_NAME = "kuavo_conversion.json"
PART_DONE = "episode.json"
#: Modules the worker processes' fork server imports once: each worker is forked from it ready to convert,
#: instead of spending ~9 s importing torch and lerobot itself.
WORKER_PRELOAD = ["kuavo_smolvla_ros.data.convert", "lerobot.datasets.lerobot_dataset", "lerobot.datasets.aggregate"]
#: Next to a part folder while its bag is converted in this process: left behind, it marks the bag that was
#: being converted when a run died (``--resume`` then converts that bag in a process of its own).
STARTED_SUFFIX = ".started"


class ConversionError(ValueError):
    """A conversion that cannot start (bad arguments, output in the way); nothing was written."""


class ConversionInterrupted(KeyboardInterrupt):
    """The run was interrupted (Ctrl-C): ``done`` bags were finished (their parts are kept, next to the output,
    for ``--resume``), the others left nothing that looks finished; the output dataset is as it was, or (if
    the interrupt came during the final swap) complete with this run's episodes."""

    def __init__(self, done: int, total: int):
        super().__init__(f"interrupted: {done} of {total} bag(s) done")
        self.done, self.total = done, total


@dataclass
class BagResult:
    """What became of one bag."""

    source: str
    sha256: str
    status: str  # converted | reused (finished part of an interrupted run) | skipped (already in the dataset) | failed
    reason: str = ""
    #: The report of its (first) episode; ``episodes`` has them all when the bag was cut at breaks in time.
    episode: dict[str, Any] = field(default_factory=dict)
    episodes: list[dict[str, Any]] = field(default_factory=list)
    #: Its breaks in time (:meth:`~kuavo_smolvla_ros.data.episode.TimeBreak.to_dict`) and the pieces left out.
    time_breaks: list[dict[str, Any]] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)


@dataclass
class ConversionResult:
    output: Path
    results: list[BagResult]
    report_path: Path | None
    summary: str

    @property
    def failed(self) -> list[BagResult]:
        return [r for r in self.results if r.status == "failed"]


def sha256_of(path: Path) -> str:
    """SHA-256 of a bag file, or of a ROS 2 bag folder's files (names and contents, in name order)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _empty(bag: Path) -> str:
    """Why ``bag`` holds nothing to read (a 0-byte file, a folder without files), or ""."""
    if bag.is_file():
        return "empty file (0 bytes)" if bag.stat().st_size == 0 else ""
    if not any(p.is_file() for p in bag.rglob("*")):
        return "empty folder (no files: not a bag)"
    return ""


def peek_image_shapes(bags: list[Path], config: ConversionConfig) -> dict[str, tuple[int, int]]:
    """Camera sizes for a new dataset: ``images.size`` if set, else the first readable frame of each camera in
    the first bag that has one on every camera; empty if no bag has (each bag then fails with its own reason).
    Never raises for a bag: whatever is wrong with one is its own conversion's failure."""
    if config.images.size:
        return {c.name: tuple(config.images.size) for c in config.cameras}
    topics = {c.topic: c.name for c in config.cameras}
    for bag in bags:
        decoder = StreamDecoder(config.profile)
        shapes: dict[str, tuple[int, int]] = {}
        try:
            for message in read_messages(bag, list(topics), undecodable="yield"):
                name = topics[message.topic]
                if name not in shapes and message.msg is not None:
                    try:
                        frame = decoder.image(name, message.msg)
                    except ValueError:  # images.ImageError and any other refusal
                        continue
                    shapes[name] = (int(frame.height), int(frame.width))
                if len(shapes) == len(topics):
                    return shapes
        except Exception:  # the bag's own conversion reports it
            continue
    return {}


def episode_report(episode: Episode, seconds: float) -> dict[str, Any]:
    """The report of one episode: frames, drops, rejections, timing (``conversion_s``: its bag's)."""
    report = {
        "frames": len(episode), "grid_ticks": episode.grid_ticks, "dropped_ticks": episode.dropped_ticks,
        "dropped": episode.dropped, "messages": episode.messages, "rejected": episode.rejected,
        "reject_reasons": episode.reject_reasons,
        "span_s": [float(episode.times[0]), float(episode.times[-1])],
        "tick_gaps": [list(gap) for gap in episode.tick_gaps], "out_of_order": episode.out_of_order,
        "stamp_skew_s": episode.skew, "sample_age_s": episode.age, "conversion_s": round(seconds, 3),
    }
    if episode.pieces > 1:
        report["piece"] = [episode.piece + 1, episode.pieces]
    return report


def bag_report(built: BagEpisodes, seconds: float) -> dict[str, Any]:
    """What a finished part records (its ``episode.json``): the episodes' reports, breaks, pieces left out."""
    return {"episodes": [episode_report(e, seconds) for e in built.episodes],
            "time_breaks": [b.to_dict() for b in built.breaks], "discarded": list(built.discarded)}


def _bag_outcome(data: dict[str, Any]) -> dict[str, Any]:
    """A part's ``episode.json`` as a :func:`bag_report` (parts written before bags could be cut hold one
    episode's report)."""
    return data if "episodes" in data else {"episodes": [data], "time_breaks": [], "discarded": []}


def convert_one(bag: str, part: str, config_data: dict, instruction: str,
                image_shapes: dict[str, tuple[int, int]], show_progress: bool = False) -> dict[str, Any]:
    """Convert one bag into the part folder ``part``; returns its :func:`bag_report` or ``{"error": reason}``.

    The bag is aligned as it is read and each row written as soon as it is aligned (:mod:`~kuavo_smolvla_ros.
    data.align`, :class:`~kuavo_smolvla_ros.data.dataset.PartWriter`): memory does not grow with the bag. Runs
    in worker processes: every failure is caught and reported (one line, the bag's first cause), the part
    folder is removed.
    """
    start = time.perf_counter()
    part_dir = Path(part)
    shutil.rmtree(part_dir, ignore_errors=True)
    try:
        config = config_from_dict(config_data)
        try:
            built = _write(bag, part_dir, config, instruction, image_shapes, show_progress, check_frames=False)
        except lerobot_io.CorruptFrameError:  # frames whose data is corrupt: reject them like any bad message
            built = _write(bag, part_dir, config, instruction, image_shapes, show_progress, check_frames=True)
        report = bag_report(built, time.perf_counter() - start)
        write_json(part_dir / PART_DONE, report)  # written last: marks the part complete
        return report
    except Exception as err:  # a bag's failure is its result, whatever it is
        shutil.rmtree(part_dir, ignore_errors=True)
        return {"error": describe_error(err).removeprefix(f"{bag}: ")}


def _write(bag: str, part_dir: Path, config: ConversionConfig, instruction: str,
           image_shapes: dict[str, tuple[int, int]], show_progress: bool, check_frames: bool) -> BagEpisodes:
    """Align ``bag`` into a new part dataset in ``part_dir``/dataset; its episodes (without frames)."""
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(desc=f"  {Path(bag).name}", unit="frame", leave=False, disable=False)  # (not TQDM_DISABLE's)

    def open_part() -> lerobot_io.PartWriter:
        shutil.rmtree(part_dir, ignore_errors=True)
        return lerobot_io.PartWriter(part_dir / "dataset", config, instruction, image_shapes,
                                     progress=bar.update if bar is not None else None)

    try:
        built, writer = stream_episodes(bag, config, open_part, check_frames)
        try:
            writer.close()
        except BaseException:
            writer.discard()
            raise
        return built
    finally:
        if bar is not None:  # (a tqdm without a total has no truth value: bool() raises)
            bar.close()


def read_report(output: Path) -> dict[str, Any]:
    """The conversion report of the dataset at ``output`` (empty if it has none); :class:`ConversionError` if
    it cannot be read."""
    path = output / "meta" / REPORT_NAME
    if not path.is_file():
        return {"episodes": [], "runs": []}
    try:
        report = json.loads(path.read_text())
        if not isinstance(report.get("episodes"), list) or not isinstance(report.get("runs"), list):
            raise ValueError("no 'episodes' and 'runs' lists")
    except (OSError, ValueError, AttributeError) as err:
        raise ConversionError(f"{path}: unreadable conversion report ({describe_error(err)}); it records which bags "
                              "the dataset holds: restore it, or convert into a new folder") from None
    return report


def print_failure(result: BagResult) -> None:
    """Print a finished bag's failure, or its breaks in time, to stderr (one line; above progress bars)."""
    from tqdm import tqdm

    if result.status == "failed":
        tqdm.write(f"FAILED {result.source}: {result.reason}", file=sys.stderr)
    elif result.time_breaks or result.discarded:
        breaks = "; ".join(f"{b['kind']} at {b['at']:.3f} s" for b in result.time_breaks)
        left = f"; left out: {'; '.join(result.discarded)}" if result.discarded else ""
        tqdm.write(f"CUT {result.source}: {len(result.episodes)} episode(s) at {len(result.time_breaks)} break(s) "
                   f"in time ({breaks}){left}", file=sys.stderr)


def check_output(output: Path, task: Task, resume: bool) -> None:
    """:class:`ConversionError` (or ``DatasetError``) unless episodes of ``task`` may go into ``output``: a new
    folder (not named after another task's training folder), or with ``resume`` a LeRobot dataset of ``task``."""
    catalog = default_catalog()
    problem = None if output.exists() else folder_problem(output)  # (an existing one: the checks below)
    if problem:
        raise ConversionError(f"--output {output}: {problem}: choose a folder that can be created")
    if output.exists():
        absent = lerobot_io.not_a_dataset(output)
        if absent:
            raise ConversionError(f"--output {output} exists and is not a LeRobot dataset ({absent}): give a new "
                                  "folder (it is created); --resume adds to a dataset this tool wrote")
        if not resume:
            raise ConversionError(f"{output} exists: pass --resume to add episodes to it, or choose another folder")
        theirs = lerobot_io.dataset_tasks(output)
        if theirs and task.instruction not in theirs:
            held = ", ".join(f"{t.name}" if (t := catalog.find(i)) is not None and t.instruction == i else repr(i)
                             for i in theirs)
            raise ConversionError(f"--task {task.name} is not the task of {output}, which holds {held}: one dataset "
                                  f"per task; convert {task.name}'s bags into a folder of their own ({task.stage_dir})")
    named = catalog.find(output.name)
    if named is not None and named.stage_dir == output.name and named.id != task.id:
        raise ConversionError(f"--output {output.name} is the training folder of task {named.id} ({named.name}) but "
                              f"--task is {task.id} ({task.name}): training would take these episodes as "
                              f"{named.name}'s; name the folder {task.stage_dir}")


def convert(inputs: list[str | Path], output: str | Path, task: str,
            config: str | Path | ConversionConfig | None = None, fps: int | None = None, workers: int = 1,
            resume: bool = False, storage: str | None = None, progress: bool = True, robot: str | None = None,
            overrides: dict[str, Any] | None = None,
            on_result: Callable[[BagResult], None] | None = None) -> ConversionResult:
    """Convert the bags found in ``inputs`` into the LeRobot dataset ``output`` (see the module doc).

    ``robot`` (a profile name or path) and ``overrides`` (profile overrides, added to the config's) take
    precedence over the config's. ``on_result(result)`` is called once per bag as soon as it is done (default
    with ``progress``: :func:`print_failure`). Raises :class:`ConversionError`, ``ConfigError`` or
    ``DatasetError`` when nothing can be done; a bag that fails, whatever is wrong with it, is reported in the
    result, never raised, and never stops the others."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    catalog = default_catalog()
    try:
        task_entry = catalog.get(task)
    except (KeyError, ValueError) as err:
        raise ConversionError(f"--task: {err.args[0]}") from None
    if not isinstance(config, ConversionConfig):
        config = load_config(config, fps=fps)
    elif fps is not None:
        config.fps = fps
    if storage:
        config.images.storage = storage
    if robot:
        config.robot = robot
    if overrides:
        config.overrides = {**config.overrides, **overrides}
    config.validate()
    if workers < 1:
        raise ConversionError(f"--workers must be >= 1, got {workers}")
    if on_result is None and progress:
        on_result = print_failure
    output = Path(output).resolve()
    parts_root = lerobot_io.sibling(output, "parts")
    lerobot_io.recover(output)
    check_output(output, task_entry, resume)
    if not resume:
        shutil.rmtree(parts_root, ignore_errors=True)
    try:
        bags = find_bags(inputs)
    except BagError as err:
        raise ConversionError(str(err)) from None
    if not bags:
        raise ConversionError(f"no bags found in {', '.join(str(i) for i in inputs)} (.bag files, .mcap files or "
                              "folders with metadata.yaml)")
    results: list[BagResult] = []
    try:
        return _convert(bags, output, config, task_entry, workers, resume, progress, on_result, started, results)
    except ConversionInterrupted:
        raise
    except KeyboardInterrupt:
        done = sum(r.status in ("converted", "reused") for r in results)
        raise ConversionInterrupted(done, len(bags)) from None


def _convert(bags: list[Path], output: Path, config: ConversionConfig, task_entry: Task, workers: int,
             resume: bool, progress: bool, on_result: Callable[[BagResult], None] | None, started: str,
             results: list[BagResult]) -> ConversionResult:
    """The body of :func:`convert` once its arguments are checked and the bags found (``results`` is filled in
    as it goes: what an interrupt reports)."""
    parts_root = lerobot_io.sibling(output, "parts")
    if workers > 1 and len(bags) > 1:
        worker_context(start=True)  # its imports overlap the hashing below

    report = read_report(output) if output.exists() else {"episodes": [], "runs": []}
    done = {e.get("sha256") for e in report["episodes"] if isinstance(e, dict)}
    if output.exists():
        image_shapes = lerobot_io.image_shapes_of(output)
        lerobot_io.check_compatible(output, config, image_shapes)
    else:
        image_shapes = peek_image_shapes(bags, config)

    todo: list[tuple[BagResult, Path]] = []
    seen: dict[str, str] = {}
    for bag in bags:
        try:
            empty = _empty(bag)
            sha = "" if empty else sha256_of(bag)
        except OSError as err:  # unreadable file (permissions, I/O error), vanished since the search
            empty, sha = f"cannot read it ({type(err).__name__}: {err.strerror or err})", ""
        if empty:
            results.append(BagResult(str(bag), sha, "failed", empty))
            if on_result:
                on_result(results[-1])
            continue
        result = BagResult(str(bag), sha, "pending")
        results.append(result)
        if sha in done or sha in seen:
            result.status = "skipped"
            result.reason = ("already in the dataset" if sha in done
                             else f"duplicate input (same content as {seen[sha]})")
            continue
        seen[sha] = str(bag)
        part = parts_root / sha[:16]
        if resume and (part / PART_DONE).is_file() and _reuse(result, part):
            if on_result:
                on_result(result)
        else:
            todo.append((result, part))

    config_data = config.to_dict()
    _run_parts(todo, config_data, task_entry.instruction, image_shapes, workers, progress, on_result)

    finished = [(r, parts_root / r.sha256[:16]) for r in results if r.status in ("converted", "reused")]
    if not image_shapes and len(finished) > 1:  # each part sized itself: only those matching the first can join
        finished = _same_image_shapes(finished, on_result)
    next_index = len(report["episodes"])
    for result, _ in finished:
        for episode in result.episodes or [result.episode]:
            entry = {"episode_index": next_index, "source": result.source, "sha256": result.sha256,
                     "task": task_entry.name} | episode
            if result.time_breaks or result.discarded:  # the bag's, on each of its episodes
                entry |= {"time_breaks": result.time_breaks, "discarded": result.discarded}
            report["episodes"].append(entry)
            next_index += 1
    counts = {s: sum(r.status == s for r in results) for s in ("converted", "reused", "skipped", "failed")}
    added = sum(len(r.episodes or [r.episode]) for r, _ in finished)
    total_frames = sum(e.get("frames", 0) for r, _ in finished for e in (r.episodes or [r.episode]))
    from_bags = f" from {len(finished)} bag(s)" if added != len(finished) else ""
    summary = (f"{output.name}: {added} episode(s) added{from_bags} ({total_frames} frames), "
               f"{counts['skipped']} skipped, {counts['failed']} failed, {len(report['episodes'])} in the dataset")
    report.update({"dataset": str(output), "format": "LeRobot v3.0", "robot_type": config.profile.robot_type,
                   "fps": config.rate, "config": config.report()})
    report["runs"].append({"started": started, "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                           "task": task_entry.name, "instruction": task_entry.instruction, "summary": summary,
                           "bags": [asdict(r) | {"episode": None, "episodes": len(r.episodes)} for r in results]})

    def finish(root: Path) -> None:
        write_json(root / "meta" / REPORT_NAME, report)

    if finished:
        try:
            lerobot_io.assemble(output, [part / "dataset" for _, part in finished], finish)
        except Exception as err:
            raise ConversionError(f"assembling {output} failed ({describe_error(err)}); the converted episodes are "
                                  f"kept in {parts_root}: rerun with --resume to reuse them") from None
        shutil.rmtree(parts_root, ignore_errors=True)
    elif output.exists():
        finish(output)
    with contextlib.suppress(OSError):  # nothing left in it (every bag failed)
        parts_root.rmdir()
    return ConversionResult(output, results, output / "meta" / REPORT_NAME if output.exists() else None, summary)


def _reuse(result: BagResult, part: Path) -> bool:
    """Take a finished part of an interrupted run (False if its record cannot be read: convert again)."""
    try:
        outcome = _bag_outcome(json.loads((part / PART_DONE).read_text()))
    except (OSError, ValueError):
        return False
    result.status = "reused"
    _apply(result, outcome)
    return True


def _apply(result: BagResult, outcome: dict[str, Any]) -> None:
    result.episodes = list(outcome["episodes"])
    result.episode = result.episodes[0] if result.episodes else {}
    result.time_breaks = list(outcome.get("time_breaks", []))
    result.discarded = list(outcome.get("discarded", []))


def _same_image_shapes(finished: list[tuple[BagResult, Path]], on_result: Callable[[BagResult], None] | None
                       ) -> list[tuple[BagResult, Path]]:
    """The parts whose camera sizes match the first part's; the others fail with the sizes."""
    def shapes_of(part: Path) -> dict | str:
        try:
            return lerobot_io.image_shapes_of(part / "dataset")
        except Exception as err:  # a part that cannot be read back cannot join
            return describe_error(err)

    first = shapes_of(finished[0][1])
    kept = []
    for result, part in finished:
        shapes = shapes_of(part)
        if shapes == first and isinstance(shapes, dict):
            kept.append((result, part))
            continue
        result.status = "failed"
        result.reason = (f"camera sizes {shapes} differ from {first} of {Path(finished[0][0].source).name}: "
                         "set images.size to resize")
        if on_result:
            on_result(result)
    return kept


def _run_parts(todo: list[tuple[BagResult, Path]], config_data: dict, instruction: str,
               image_shapes: dict[str, tuple[int, int]], workers: int, progress: bool,
               on_result: Callable[[BagResult], None] | None = None,
               work: Callable[..., dict[str, Any]] = convert_one) -> None:
    """Convert the pending bags with ``work`` (:func:`convert_one`), in this process (workers=1) or a pool of
    processes. A worker process that dies (killed, out of memory, a crash in native code) loses nothing: the
    bags it left unfinished are converted again each in a process of its own, and the one that kills its
    process again fails with the reason. A bag marked as started by a run that died is converted in a process
    of its own too."""
    from tqdm import tqdm

    def record(result: BagResult, outcome: dict[str, Any]) -> None:
        if "error" in outcome:
            result.status, result.reason = "failed", outcome["error"]
        else:
            result.status = "converted"
            _apply(result, _bag_outcome(outcome))
        if on_result:
            on_result(result)

    def args(result: BagResult, part: Path, show: bool = False) -> tuple:
        return result.source, str(part), config_data, instruction, image_shapes, show

    bar = tqdm(total=len(todo), desc="bags", unit="bag", disable=not progress or not todo)
    try:
        suspects = [(r, p) for r, p in todo if _marker(p).exists()]
        for result, part in suspects:  # the bag a run died converting: in a process of its own
            record(result, _isolated(work, args(result, part)))
            _marker(part).unlink(missing_ok=True)
            bar.update(1)
        todo = [(r, p) for r, p in todo if r.status == "pending"]
        if workers == 1 or len(todo) <= 1:
            for result, part in todo:
                marker = _marker(part)
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
                try:
                    outcome = work(*args(result, part, progress))
                finally:  # an interrupt is not the bag's fault: only a process that dies leaves the marker
                    marker.unlink(missing_ok=True)
                record(result, outcome)
                bar.update(1)
            return
        # the workers ignore Ctrl-C (the terminal sends it to them too): this process stops them
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=worker_context(start=True),
                                   initializer=_ignore_interrupts)
        try:
            futures = {pool.submit(work, *args(result, part)): result for result, part in todo}
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    continue  # its worker died (or another's did): converted again below, in isolation
                except Exception as err:  # e.g. a result that cannot be sent back
                    outcome = {"error": f"its conversion process failed ({describe_error(err)})"}
                record(futures[future], outcome)
                bar.update(1)
        except BaseException:  # an interrupt: stop the workers now (their unfinished parts have no PART_DONE)
            _stop_pool(pool)
            raise
        pool.shutdown(wait=True)
        for result, part in todo:
            if result.status == "pending":
                record(result, _isolated(work, args(result, part)))
                bar.update(1)
    finally:
        bar.close()


def worker_context(start: bool = False) -> multiprocessing.context.BaseContext:
    """The context of the worker pool: a fork server that has imported :data:`WORKER_PRELOAD` (where the
    platform has one; else spawn). ``start``: start the server now, so that its imports overlap the caller's
    work (hashing the bags); its workers then start in milliseconds."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_PRELOAD)
    if start:
        from multiprocessing import forkserver

        # started with SIGINT ignored, the server keeps ignoring it through its imports (a Ctrl-C then would
        # print its traceback) and its workers inherit that; this process stops them
        with _interrupts_ignored():
            forkserver.ensure_running()
    return context


def _ignore_interrupts() -> None:
    """(In a worker process) ignore SIGINT: Ctrl-C goes to the whole process group, and the main process
    stops its workers itself (no traceback from each)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import threading

    from tqdm import tqdm

    # tqdm's default lock is a multiprocessing semaphore (made at the first bar): in a worker killed by an
    # interrupt it would be left to the resource tracker, which warns about it at exit. A thread lock suffices
    tqdm.set_lock(threading.RLock())


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a worker pool at once: pending bags cancelled, running ones killed."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(5)
    with contextlib.suppress(Exception):  # its manager thread sees the workers gone and releases the queues
        pool.shutdown(wait=True)


@contextlib.contextmanager
def _interrupts_ignored():
    """SIGINT ignored while in the block (main thread only), so that a process started in it inherits the
    disposition and ignores Ctrl-C from its first instruction."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _marker(part: Path) -> Path:
    return part.with_name(part.name + STARTED_SUFFIX)


def _isolated(work: Callable[..., dict[str, Any]], args: tuple) -> dict[str, Any]:
    """``work(*args)`` in a process of its own; ``{"error": ...}`` naming how it died if it does not return."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, work, args), name="kuavo-convert-bag")
    with _interrupts_ignored():  # the child ignores Ctrl-C: this process terminates it (below)
        process.start()
    sender.close()
    try:
        try:
            outcome = receiver.recv()
        except EOFError:
            outcome = None
        process.join()
    finally:
        receiver.close()
        if process.is_alive():  # interrupted while waiting
            process.terminate()
            process.join(5)
    if outcome is not None:
        return outcome
    code = process.exitcode
    how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"
    return {"error": f"its conversion process died ({how}: out of memory, or a crash in native code such as a "
                     "decoder); the other bags are not affected"}


def _child(sender, work: Callable[..., dict[str, Any]], args: tuple) -> None:
    """The body of an isolated conversion process: send ``work(*args)`` back."""
    try:
        sender.send(work(*args))
    finally:
        sender.close()
