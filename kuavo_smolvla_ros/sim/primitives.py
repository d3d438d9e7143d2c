"""The pretraining primitives (``config/primitives.yaml``) on the simulated table, and their episodes.

They play the part of the data ``lerobot/smolvla_base`` was pretrained on: skills *other* than the four
factory tasks, so that a base made from them can be frozen and fine-tuned with the real recipe. Each
primitive is one hand and the orange block at a continuous position anywhere in that hand's half of the
table (not only on the conveyor): touch it (grasp and release in place), pull it closer to the robot, or
put it down further out to the side. Every goal depends on where the block is, which only the cameras
show, so a policy that solves them has to locate the block in the images.

:func:`episode_frames` runs the scripted expert (:mod:`kuavo_smolvla_ros.sim.expert`) on one primitive
and samples what a converted dataset holds at ``fps``: the three rendered cameras (JPEG round trip, as
the recorder and converter store them), the 16-dim state and the latest 16-dim command.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from kuavo_smolvla_ros.resources import share_file
from kuavo_smolvla_ros.sim.expert import ScriptedExpert
from kuavo_smolvla_ros.sim.kinematics import reachable
from kuavo_smolvla_ros.sim.render import CAMERA_JPEG_QUALITY, jpeg_round_trip, render_cameras
from kuavo_smolvla_ros.sim.scenes import Scene
from kuavo_smolvla_ros.sim.world import SimWorld, WorldConfig
from kuavo_smolvla_ros.tasks import Task, TaskCatalog

#: Where a primitive's block may start, per hand (table metres: x to the robot's right, y forwards).
REGION_X = {"left": (-0.40, 0.05), "right": (-0.05, 0.40)}
REGION_Y = (0.32, 0.66)
#: How far "closer to the robot" and "further out to the side" are (m).
PULL = 0.15
PUSH_OUT = 0.12


@lru_cache(maxsize=1)
def primitive_catalog() -> TaskCatalog:
    """The primitives of the installed ``config/primitives.yaml``."""
    return TaskCatalog.load(share_file("config/primitives.yaml"))


def arm_of(task: Task) -> str:
    """The hand a primitive uses (its name ends in ``_left`` or ``_right``)."""
    arm = task.name.rsplit("_", 1)[-1]
    if arm not in ("left", "right"):
        raise ValueError(f"primitive {task.name!r} does not name a hand")
    return arm


def goal(task: Task, start: np.ndarray) -> np.ndarray:
    """Where a primitive puts the block down, from where it starts (``ValueError`` for an unknown kind)."""
    arm = arm_of(task)
    kind = task.name[: -len(arm) - 1]
    if kind == "touch":
        return start.copy()
    if kind == "pull":
        return start + np.array([0.0, -PULL])
    if kind == "push_out":
        return start + np.array([-PUSH_OUT if arm == "left" else PUSH_OUT, 0.0])
    raise ValueError(f"unknown primitive kind {kind!r} ({task.name})")


def draw_episode(task: Task, seed: int) -> tuple[Scene, np.ndarray]:
    """The scene and the block's start of one episode: uniform over the hand's region, redrawn until the
    hand can reach both the start and the goal within the joint limits."""
    rng = np.random.default_rng(seed)
    arm = arm_of(task)
    for _ in range(1000):
        start = np.array([rng.uniform(*REGION_X[arm]), rng.uniform(*REGION_Y)])
        target = goal(task, start)
        if reachable(arm, start) and reachable(arm, target):
            return Scene(task.name, (arm,), (tuple(float(v) for v in target),)), start
    raise RuntimeError(f"no reachable start for {task.name} (seed {seed})")


def reset(world: SimWorld, task: Task, seed: int):
    """Start ``world``'s episode of primitive ``task`` with object seed ``seed``."""
    scene, start = draw_episode(task, seed)
    return world.reset(task, seed, scene=scene, object_start=start)


@dataclass(frozen=True)
class EpisodeFrames:
    """One primitive episode as dataset frames: ``images`` camera -> (T, H, W, 3) uint8, ``state`` and
    ``action`` (T, 16) float32 (radians, grippers 0..1), ``object_xy`` (T, 2) where the block is in each
    frame (table metres), and whether the expert solved it."""

    task: Task
    images: dict[str, np.ndarray]
    state: np.ndarray
    action: np.ndarray
    object_xy: np.ndarray
    success: bool


def episode_frames(task: Task, seed: int, cameras: dict[str, tuple[int, int]], fps: int = 10,
                   command_hz: float = 30.0, tail_s: float = 0.5, jpeg_quality: int | None = CAMERA_JPEG_QUALITY,
                   world_config: WorldConfig | None = None) -> EpisodeFrames:
    """Run the expert on primitive ``task`` (seed ``seed``) at ``command_hz`` and sample a frame every
    ``1/fps`` s until ``tail_s`` after success (or the episode's time limit): ``cameras`` maps camera name
    -> (height, width). ``jpeg_quality`` None keeps the rendered pixels."""
    world = SimWorld(world_config or WorldConfig())
    reset(world, task, seed)
    expert = ScriptedExpert(world, rate_hz=command_hz)
    ticks_per_frame = round(command_hz / fps)
    if ticks_per_frame < 1 or abs(ticks_per_frame * fps - command_hz) > 1e-6:
        raise ValueError(f"command_hz ({command_hz}) must be a multiple of fps ({fps})")
    images: dict[str, list[np.ndarray]] = {name: [] for name in cameras}
    states, actions, objects = [], [], []
    end, tick = None, 0
    while world.time < world.config.max_episode_s and (end is None or world.time < end - 1e-9):
        command = expert.act()
        if tick % ticks_per_frame == 0:
            for name, image in render_cameras(world, cameras).items():
                images[name].append(image if jpeg_quality is None else jpeg_round_trip(image, jpeg_quality))
            states.append(world.state)
            actions.append(command)
            objects.append(world.object.copy())
        world.arms.set_command(command)
        world.step(1.0 / command_hz)
        tick += 1
        if end is None and world.success:
            end = world.time + tail_s
    return EpisodeFrames(task, {name: np.stack(frames) for name, frames in images.items()},
                         np.asarray(states, dtype=np.float32), np.asarray(actions, dtype=np.float32),
                         np.asarray(objects, dtype=np.float32), world.success)
