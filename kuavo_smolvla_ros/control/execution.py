"""How chunks are executed: the settings the policy node and closed-loop evaluation share, and the one place
that builds a :class:`PolicyController` from them (scheduler, seam blend, safety filter, latency-based
requests), so the benchmark, the demo's simulated-time episodes and the node run the same executor."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.control.controller import ControllerConfig, PolicyController
from kuavo_smolvla_ros.control.safety import SafetyFilter
from kuavo_smolvla_ros.control.worker import InferenceWorker
from kuavo_smolvla_ros.observation import Observation
from kuavo_smolvla_ros.tasks import TaskCatalog


@dataclass(frozen=True)
class ExecutionSettings:
    """The policy node's parameters of the same names that shape what the robot is sent (defaults: the node's,
    ``config/policy.yaml``). Rates in Hz, velocities in rad/s (grippers: their 0..1 range per second)."""

    rate_hz: float = robot.CONTROL_RATE_HZ
    n_action_steps: int = 8
    blend_steps: int = 2
    max_joint_velocity: float = robot.MAX_ARM_VELOCITY
    max_gripper_velocity: float = robot.MAX_GRIPPER_VELOCITY
    ramp_in_s: float = 1.0
    #: "blend" or "rtc" (lerobot's real-time chunking; the predictor must accept ``prefix`` and
    #: ``inference_delay``, as ``PolicyRuntime.predict_chunk`` does after ``enable_rtc``).
    chunk_transition: str = "blend"

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    def max_step(self) -> np.ndarray:
        """(16,) the largest change of each command per control period."""
        velocity = np.full(robot.ACTION_DIM, float(self.max_joint_velocity))
        velocity[robot.GRIPPER_INDICES] = self.max_gripper_velocity
        return velocity / self.rate_hz

    def safety_filter(self) -> SafetyFilter:
        """The joint limits, ``max_step`` per period of elapsed command time, and the ramp-in."""
        return SafetyFilter(max_step=self.max_step(), ramp_ticks=round(self.ramp_in_s * self.rate_hz),
                            period_s=self.period_s)

    def latency_ticks(self, seconds: float) -> int:
        """Control ticks a model that takes ``seconds`` per chunk occupies (at least 1: a chunk requested at
        one tick is collected at a later one)."""
        return max(1, math.ceil(max(seconds, 0.0) / self.period_s))


def make_controller(execution: ExecutionSettings, cameras: list[str], predict: Callable[[Observation], np.ndarray],
                    catalog: TaskCatalog, *, worker: Callable[..., Any] = InferenceWorker,
                    stream_max_age_s: Mapping[str, float | None] | None = None, **config: Any) -> PolicyController:
    """The node's controller for ``execution``: its rate, chunk execution, seam blend and safety filter;
    ``config`` sets the other :class:`ControllerConfig` fields (stale handling, initial latency, stamps)."""
    return PolicyController(
        ControllerConfig(rate_hz=execution.rate_hz, n_action_steps=execution.n_action_steps,
                         blend_steps=execution.blend_steps, chunk_transition=execution.chunk_transition,
                         stream_max_age_s=stream_max_age_s, **config),
        cameras=cameras, predict=predict, safety=execution.safety_filter(), catalog=catalog, worker=worker)
