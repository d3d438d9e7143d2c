"""Closed-loop evaluation of a checkpoint in the simulator, in simulated time (no ROS, no waiting).

Each episode runs the policy as the node does, minus the wall clock: every ``n_action_steps`` control
ticks a chunk is predicted from the rendered cameras, the measured state and the task's instruction,
and its first actions pass one per tick through the node's :class:`SafetyFilter` to the simulated
arms. This is how the benchmark runs hundreds of episodes; the demo runs the real node over ROS.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.control.safety import SafetyFilter
from kuavo_smolvla_ros.policy.runtime import Observation, PolicyRuntime
from kuavo_smolvla_ros.sim.render import render_cameras
from kuavo_smolvla_ros.sim.world import SimWorld, WorldConfig
from kuavo_smolvla_ros.tasks import Task

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


def run_episode(predict: Callable[[Observation], np.ndarray], task: Task, seed: int,
                image_sizes: dict[str, tuple[int, int]], *, n_action_steps: int = 8,
                rate_hz: float = robot.CONTROL_RATE_HZ, world_config: WorldConfig | None = None) -> EpisodeResult:
    """One closed-loop episode of ``task`` (object drawn from ``seed``)."""
    world = SimWorld(world_config)
    episode = world.reset(task, seed)
    safety = SafetyFilter(ramp_ticks=0)  # the node's limits; no ramp-in: episodes start from rest
    safety.reset(world.state)
    queue: list[np.ndarray] = []
    states, inferences = [world.state], 0
    while not world.done:
        if not queue:
            observation = Observation(render_cameras(world, image_sizes), world.state.astype(np.float32),
                                      task.instruction)
            chunk = np.asarray(predict(observation), dtype=np.float64)
            queue = list(chunk[:n_action_steps])
            inferences += 1
        world.arms.set_command(safety.apply(queue.pop(0)).command)
        world.step(1.0 / rate_hz)
        states.append(world.state)
    return EpisodeResult(task.name, seed, world.success, episode.success_time, world.time, inferences,
                         np.array(states), tuple(float(v) for v in episode.object_start), list(episode.events))


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
    return lambda observation: runtime.predict_chunk(
        observation, seed=episode_noise_seed(noise_seed, task, seed, next(calls)))


def image_sizes(runtime: PolicyRuntime) -> dict[str, tuple[int, int]]:
    return {name: tuple(runtime.info.image_shapes[name][1:]) for name in runtime.cameras}


def evaluate(runtime: PolicyRuntime, tasks: Sequence[Task], episodes: int, first_seed: int = EVAL_SEED_BASE,
             noise_seed: int = 0, progress: bool = True) -> dict[str, list[EpisodeResult]]:
    """``episodes`` episodes of every task: the same object seeds and noise streams for every checkpoint."""
    from tqdm import tqdm

    sizes = image_sizes(runtime)
    results: dict[str, list[EpisodeResult]] = {task.name: [] for task in tasks}
    jobs = [(task, first_seed + i) for task in tasks for i in range(episodes)]
    for task, seed in tqdm(jobs, desc="closed loop", unit="episode", disable=not progress, leave=False):
        results[task.name].append(run_episode(episode_predictor(runtime, task, seed, noise_seed), task, seed, sizes,
                                              n_action_steps=runtime.n_action_steps))
    return results


def success_rates(results: dict[str, list[EpisodeResult]]) -> dict[str, float]:
    return {name: float(np.mean([r.success for r in runs])) if runs else float("nan")
            for name, runs in results.items()}
