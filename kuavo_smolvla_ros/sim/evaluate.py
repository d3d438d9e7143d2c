"""Closed-loop evaluation of a checkpoint in the simulator, in simulated time (no ROS, no waiting).

Each episode runs the node's own executor (:func:`~kuavo_smolvla_ros.control.execution.make_controller`:
the chunk scheduler, the seam blend, the safety filter with its ramp-in, requests timed from the model's
latency) minus the wall clock: every control tick the simulated cameras and the measured state are filed
as the node files its topics, ``tick`` decides the command, and the model's latency is a whole number of
control ticks (:class:`~kuavo_smolvla_ros.control.worker.SteppedWorker`). The cameras go through a JPEG as
``sim_robot`` publishes them and the recorded bags hold them. This is how the benchmark runs
hundreds of episodes; the demo also runs the real node over ROS. Success is :attr:`SimWorld.success`
(solved within ``max_episode_s``), as ``sim_robot`` reports it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kuavo_smolvla_ros.control.execution import ExecutionSettings, make_controller
from kuavo_smolvla_ros.control.worker import SteppedWorker
from kuavo_smolvla_ros.policy.runtime import Observation, PolicyRuntime
from kuavo_smolvla_ros.sim.render import CAMERA_JPEG_QUALITY, jpeg_round_trip, render_cameras
from kuavo_smolvla_ros.sim.world import SimWorld, WorldConfig
from kuavo_smolvla_ros.tasks import Task, default_catalog

#: Evaluation object seeds start here, far from the recorded demonstrations' seeds (0, 1, ...).
EVAL_SEED_BASE = 100_000


@dataclass
class EpisodeResult:
    task: str
    seed: int
    success: bool
    success_time: float | None
    duration: float
    inferences: int
    states: np.ndarray  # (ticks + 1, 16) measured states, one per control tick
    object_start: tuple[float, float]
    events: list = field(default_factory=list)
    #: (ticks, 16) the commands sent, one per control tick (NaN before the first chunk took over)
    commands: np.ndarray = field(default_factory=lambda: np.empty((0, 16)))
    #: ticks that repeated the last command because no chunk was ready (the model behind)
    held_ticks: int = 0
    latency_ticks: int = 1
    #: control ticks at which a new chunk took over (its first action was that tick's command)
    seams: list[int] = field(default_factory=list)
    #: (ticks, 16) the scheduled actions before the safety filter (NaN where none: before the first chunk, held)
    proposed: np.ndarray = field(default_factory=lambda: np.empty((0, 16)))


class _Frames:
    """The world's camera images, rendered at most once per tick and only when an inference uses them, through
    a JPEG at ``jpeg_quality`` as ``sim_robot`` publishes them and the recorded bags hold them (None: the
    rendered pixels)."""

    def __init__(self, world: SimWorld, sizes: dict[str, tuple[int, int]], jpeg_quality: int | None):
        self.world, self.sizes, self.jpeg_quality = world, sizes, jpeg_quality
        self._tick, self._images = -1, {}

    def loader(self, tick: int, camera: str) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            if self._tick != tick:
                images = render_cameras(self.world, self.sizes)
                if self.jpeg_quality is not None:
                    images = {name: jpeg_round_trip(image, self.jpeg_quality) for name, image in images.items()}
                self._tick, self._images = tick, images
            return self._images[camera]
        return load


def run_episode(predict: Callable[[Observation], np.ndarray], task: Task, seed: int,
                image_sizes: dict[str, tuple[int, int]], *, execution: ExecutionSettings | None = None,
                latency_ticks: int = 1, world_config: WorldConfig | None = None,
                jpeg_quality: int | None = CAMERA_JPEG_QUALITY) -> EpisodeResult:
    """One closed-loop episode of ``task`` (object drawn from ``seed``) through the node's executor, with a
    model that takes ``latency_ticks`` control ticks per chunk (>= 1). The policy sees the cameras through a
    JPEG at ``jpeg_quality`` (as ``sim_robot`` sends them and the training bags hold them; None: raw)."""
    execution = execution or ExecutionSettings()
    period = execution.period_s
    world = SimWorld(world_config)
    episode = world.reset(task, seed)
    frames = _Frames(world, image_sizes, jpeg_quality)
    cameras = list(image_sizes)
    controller = make_controller(
        execution, cameras, predict, default_catalog(),
        worker=functools.partial(SteppedWorker, latency_ticks=latency_ticks, period_s=period),
        initial_latency_s=(latency_ticks - 0.5) * period)
    try:
        controller.set_instruction(task.instruction)
        states, commands, proposed, held, seams = [world.state], [], [], 0, []
        tick = 0
        while not world.done:
            now = tick * period
            controller.add_state(world.state, None, now)
            for camera in cameras:
                controller.add_image(camera, frames.loader(tick, camera), None, now)
            out = controller.tick(now)
            if out.takeover is not None and out.command is not None:
                seams.append(tick)
            nothing = np.full(world.state.shape, np.nan)
            proposed.append(nothing if out.proposed is None else np.asarray(out.proposed, dtype=np.float64))
            if out.command is not None:
                world.arms.set_command(out.command)
                commands.append(np.asarray(out.command, dtype=np.float64))
                held += int(out.held)
            else:
                commands.append(nothing)
            world.step(period)
            states.append(world.state)
            tick += 1
        inferences = controller.counters.inferences + int(controller.worker.busy)
    finally:
        controller.close()
    return EpisodeResult(task.name, seed, world.success, episode.success_time, world.time, inferences,
                         np.array(states), tuple(float(v) for v in episode.object_start), list(episode.events),
                         np.array(commands), held, latency_ticks, seams, np.array(proposed))


def episode_noise_seed(noise_seed: int, task: Task, seed: int, inference: int) -> int:
    """The noise seed of an episode's ``inference``-th chunk: a function of that episode alone."""
    return int(np.random.SeedSequence([noise_seed, task.id, seed, inference]).generate_state(1, np.uint64)[0])


def episode_predictor(runtime: PolicyRuntime, task: Task, seed: int,
                      noise_seed: int = 0) -> Callable[[Observation], np.ndarray]:
    """``runtime.predict_chunk`` with the episode's own reproducible noise stream.

    The k-th chunk of episode (``task``, ``seed``) starts from the same noise for every checkpoint and
    whatever the other episodes did (common random numbers): two checkpoints are compared on the same
    objects *and* the same noise, and any one episode can be replayed alone.
    """
    calls = itertools.count()
    return lambda observation, **guidance: runtime.predict_chunk(  # guidance: real-time chunking's prefix
        observation, seed=episode_noise_seed(noise_seed, task, seed, next(calls)), **guidance)


def image_sizes(runtime: PolicyRuntime) -> dict[str, tuple[int, int]]:
    return {name: tuple(runtime.info.image_shapes[name][1:]) for name in runtime.cameras}


def measured_latency_ticks(runtime: PolicyRuntime, execution: ExecutionSettings, iterations: int = 3) -> int:
    """Control ticks one chunk of ``runtime`` takes on this machine (the median of ``iterations`` timed
    predictions after a warm-up)."""
    runtime.warmup(1)
    seconds = sorted(runtime.warmup(1) for _ in range(max(1, iterations)))
    return execution.latency_ticks(seconds[len(seconds) // 2])


def evaluate(runtime: PolicyRuntime, tasks: Sequence[Task], episodes: int, first_seed: int = EVAL_SEED_BASE,
             noise_seed: int = 0, progress: bool = True, latency_ticks: int | None = None,
             execution: ExecutionSettings | None = None,
             jpeg_quality: int | None = CAMERA_JPEG_QUALITY) -> dict[str, list[EpisodeResult]]:
    """``episodes`` episodes of every task through the node's executor: the same object seeds and noise
    streams for every checkpoint. ``latency_ticks`` None: what the checkpoint measures on this machine.
    ``execution.chunk_transition == "rtc"`` turns on the runtime's real-time chunking. The cameras go through a
    JPEG at ``jpeg_quality`` (None: the rendered pixels, for a robot profile with raw cameras)."""
    from tqdm import tqdm

    execution = execution or ExecutionSettings(n_action_steps=runtime.n_action_steps)
    if execution.chunk_transition == "rtc" and not runtime.rtc_enabled:
        runtime.enable_rtc()
    if latency_ticks is None:
        latency_ticks = measured_latency_ticks(runtime, execution)
    sizes = image_sizes(runtime)
    results: dict[str, list[EpisodeResult]] = {task.name: [] for task in tasks}
    jobs = [(task, first_seed + i) for task in tasks for i in range(episodes)]
    for task, seed in tqdm(jobs, desc="closed loop", unit="episode", disable=not progress, leave=False):
        results[task.name].append(run_episode(episode_predictor(runtime, task, seed, noise_seed), task, seed, sizes,
                                              execution=execution, latency_ticks=latency_ticks,
                                              jpeg_quality=jpeg_quality))
    return results


def success_rates(results: dict[str, list[EpisodeResult]]) -> dict[str, float]:
    return {name: float(np.mean([r.success for r in runs])) if runs else float("nan")
            for name, runs in results.items()}
