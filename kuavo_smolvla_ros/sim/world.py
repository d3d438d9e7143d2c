"""The simulated world: the arms, one object on the table, the current task and its success test.

The object is grasped when a gripper closes (crosses ``close_threshold``) with its hand within
``grasp_radius`` of it, follows the holding hand, passes to the other hand when both hold it and one
opens, and is put down where the last holding hand opens. ``step`` advances by fixed physics steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kuavo_smolvla_ros.sim import scenes
from kuavo_smolvla_ros.sim.kinematics import ARMS, KinematicArms, gripper_index, hand_position
from kuavo_smolvla_ros.sim.scenes import Event, Scene
from kuavo_smolvla_ros.tasks import Task, default_catalog


@dataclass(frozen=True)
class WorldConfig:
    physics_hz: float = 100.0
    arm_tau_s: float = 0.08
    gripper_tau_s: float = 0.12
    grasp_radius: float = 0.05
    close_threshold: float = 0.7
    open_threshold: float = 0.3
    #: An episode not solved by then is over (failed).
    max_episode_s: float = 20.0

    def __post_init__(self):
        if self.physics_hz <= 0 or self.max_episode_s <= 0:
            raise ValueError("physics_hz and max_episode_s must be > 0")
        if not 0 < self.open_threshold < self.close_threshold < 1:
            raise ValueError("need 0 < open_threshold < close_threshold < 1")


@dataclass
class EpisodeInfo:
    task: Task
    scene: Scene
    seed: int
    object_start: np.ndarray
    events: list[Event] = field(default_factory=list)
    success_time: float | None = None


class SimWorld:
    """One Kuavo at one table. ``reset(task, seed)`` starts an episode; ``time`` counts from it."""

    def __init__(self, config: WorldConfig | None = None):
        self.config = config or WorldConfig()
        self.arms = KinematicArms(self.config.arm_tau_s, self.config.gripper_tau_s)
        self.time = 0.0
        self.object = np.array([0.0, scenes.CONVEYOR_Y])
        self.holders: list[str] = []
        self.episode: EpisodeInfo | None = None
        self._closed = {arm: False for arm in ARMS}

    # ------------------------------------------------------------------------------- episodes
    def reset(self, task: Task | str, seed: int, scene: Scene | None = None,
              object_start: np.ndarray | None = None) -> EpisodeInfo:
        """Home pose, grippers open, the task's scene, the object on the conveyor: in slot
        :func:`~kuavo_smolvla_ros.sim.scenes.conveyor_slot` of ``seed``, its jitter drawn from ``seed``. ``scene``
        and ``object_start`` (table xy, m) replace the task list's scene and the conveyor draw (the pretraining
        primitives of :mod:`kuavo_smolvla_ros.sim.primitives`)."""
        if not isinstance(task, Task):
            task = default_catalog().get(task)
        rng = np.random.default_rng(seed)
        self.arms.reset()
        self.time = 0.0
        self.object = (scenes.object_start(rng, scenes.conveyor_slot(seed)) if object_start is None
                       else np.asarray(object_start, dtype=np.float64).copy())
        self.holders = []
        self._closed = {arm: False for arm in ARMS}
        self.episode = EpisodeInfo(task, scene or scenes.scene_for(task), seed, self.object.copy())
        return self.episode

    @property
    def state(self) -> np.ndarray:
        """The measured 16-dim joint state."""
        return self.arms.state.copy()

    @property
    def success(self) -> bool:
        """Solved within ``max_episode_s``: the one definition of success (closed-loop evaluation and
        ``sim_robot``, which keeps stepping after an episode's time is up, both read it)."""
        return (self.episode is not None and self.episode.success_time is not None
                and self.episode.success_time <= self.config.max_episode_s + 1e-9)

    @property
    def done(self) -> bool:
        """Solved, or out of time."""
        return self.success or self.time >= self.config.max_episode_s - 1e-9

    def hand(self, arm: str) -> np.ndarray:
        return hand_position(self.arms.state, arm)

    # ------------------------------------------------------------------------------- physics
    def step(self, seconds: float) -> None:
        """Advance by ``seconds`` in physics steps (the last one shortened to land exactly)."""
        dt = 1.0 / self.config.physics_hz
        remaining = float(seconds)
        while remaining > 1e-12:
            h = min(dt, remaining)
            self.arms.step(h)
            self.time += h
            remaining -= h
            self._update_object()

    def _update_object(self) -> None:
        cfg = self.config
        for arm in ARMS:
            grip = self.arms.state[gripper_index(arm)]
            was_closed = self._closed[arm]
            if not was_closed and grip >= cfg.close_threshold:
                self._closed[arm] = True
                if arm not in self.holders and np.linalg.norm(self.hand(arm) - self.object) <= cfg.grasp_radius:
                    self.holders.append(arm)
                    self._record("grasp", arm)
            elif was_closed and grip <= cfg.open_threshold:
                self._closed[arm] = False
                if arm in self.holders:
                    self.holders.remove(arm)
                    if not self.holders:
                        self._record("release", arm)
        if self.holders:
            self.object = self.hand(self.holders[-1]).copy()

    def _record(self, kind: str, arm: str) -> None:
        if self.episode is None:
            return
        self.episode.events.append(Event(kind, arm, (float(self.object[0]), float(self.object[1])), self.time))
        if self.episode.success_time is None and self.episode.scene.success(self.episode.events, bool(self.holders)):
            self.episode.success_time = self.time
