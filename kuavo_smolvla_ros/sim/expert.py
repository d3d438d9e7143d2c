"""A scripted expert that solves every simulated task from what it measures (the demonstrator).

The plan is a list of phases built from the scene and the object's position: move a hand to a point,
close or open a gripper. Each call of :meth:`ScriptedExpert.act` returns the next 16-dim command,
moving the active hand towards its goal at a capped joint speed (within the policy node's safety
limits) and the grippers at a capped rate; a phase ends when the measured state reaches its goal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.sim.kinematics import HOME, arm_pose, arm_slice, gripper_index
from kuavo_smolvla_ros.sim.world import SimWorld

#: How far (m) the open hand moves sideways from an object it has just put down before grasping it again
#: (moving grasp, weighing), as a teleoperator lets go and takes hold anew. Grasping again where it opened
#: would make two moments look the same to a policy that sees only the present (hand at the target, gripper
#: half closed: opening on arrival, or closing to take it again) with opposite commands, and a chunked policy
#: then opens and closes there until the episode runs out. Within the world's grasp radius (0.05 m) with room
#: for a policy's error.
REGRASP_BACKOFF_M = 0.03


def regrasp_point(put_down: tuple[float, float], next_target: tuple[float, float]) -> tuple[float, float]:
    """Where the open hand grasps an object again that it put down at ``put_down`` before carrying it to
    ``next_target`` (table xy, m): :data:`REGRASP_BACKOFF_M` to the side of the line between them, away from
    the middle of the table (x = 0, where the other hand works). Neither back along the way it came (a move
    ends up to ~1 cm short, which would eat the distance) nor on towards the next target (the carry would pass
    the place where it opened, showing "open" and "carry on" for the same picture)."""
    start, end = np.asarray(put_down, dtype=np.float64), np.asarray(next_target, dtype=np.float64)
    along = (end - start) / np.linalg.norm(end - start)
    side = np.array([along[1], -along[0]])
    if side[0] * start[0] < 0:  # point away from the middle
        side = -side
    point = start + REGRASP_BACKOFF_M * side
    return float(point[0]), float(point[1])


@dataclass(frozen=True)
class Phase:
    kind: str  # "move" | "close" | "open"
    arm: str
    xy: tuple[float, float] | None = None


def plan(world: SimWorld) -> list[Phase]:
    """The phases that solve the world's current episode."""
    scene = world.episode.scene
    start = tuple(world.episode.object_start)
    first = scene.holders[0]
    phases = [Phase("move", first, start), Phase("close", first)]
    if scene.handover is not None:
        second = scene.holders[1]
        phases += [Phase("move", first, scene.handover), Phase("move", second, scene.handover),
                   Phase("close", second), Phase("open", first), Phase("move", first, HOME[first])]
    holder = scene.holders[-1]
    for via in scene.via:
        phases.append(Phase("move", holder, via))
    for index, target in enumerate(scene.targets):
        if index:  # grasp again where it was put down, from beside it (see REGRASP_BACKOFF_M)
            phases += [Phase("move", holder, regrasp_point(scene.targets[index - 1], target)), Phase("close", holder)]
        phases += [Phase("move", holder, target), Phase("open", holder)]
    return phases


class ScriptedExpert:
    """Commands for one episode; ``act(world)`` once per control tick (any rate)."""

    def __init__(self, world: SimWorld, rate_hz: float = 30.0, max_joint_speed: float = 0.9,
                 max_gripper_speed: float = 1.8, reach_tolerance: float = 0.01, gain: float = 3.0):
        self.world = world
        self.dt = 1.0 / rate_hz
        self.max_joint_step = max_joint_speed * self.dt
        self.max_gripper_step = max_gripper_speed * self.dt
        self.tolerance = reach_tolerance
        self.gain = gain
        self.phases = plan(world)
        self.index = 0
        self.command = world.state

    @property
    def finished(self) -> bool:
        return self.index >= len(self.phases)

    @property
    def phase(self) -> Phase | None:
        return None if self.finished else self.phases[self.index]

    def _reached(self, phase: Phase) -> bool:
        state = self.world.state
        if phase.kind == "move":
            goal = arm_pose(phase.arm, phase.xy)
            return bool(np.max(np.abs(state[arm_slice(phase.arm)] - goal)) < self.tolerance / 0.3)
        grip = state[gripper_index(phase.arm)]
        return bool(grip > 0.9) if phase.kind == "close" else bool(grip < 0.1)

    def act(self) -> np.ndarray:
        """The next command (holds the last one once the plan is done)."""
        while not self.finished and self._reached(self.phases[self.index]):
            self.index += 1
        command = self.command.copy()
        phase = self.phase
        if phase is not None and phase.kind == "move":
            joints = arm_slice(phase.arm)
            error = arm_pose(phase.arm, phase.xy) - command[joints]
            speed = min(self.max_joint_step, self.gain * self.dt * float(np.max(np.abs(error))))
            largest = float(np.max(np.abs(error)))
            if largest > 0:
                command[joints] += error * min(1.0, speed / largest)
        elif phase is not None:
            index = gripper_index(phase.arm)
            goal = 1.0 if phase.kind == "close" else 0.0
            command[index] += np.clip(goal - command[index], -self.max_gripper_step, self.max_gripper_step)
        self.command = np.clip(command, robot.LOWER_LIMITS, robot.UPPER_LIMITS)
        return self.command.copy()
