"""The four simulated tasks: the same table for all, a different target sequence per task.

Each mirrors its real task's structure (see ``config/tasks.yaml``): grasp an object whose position on the
conveyor only the cameras show, place it at a first target, re-grasp, place it at a second (moving grasp,
weighing); hand it from the left to the right hand and place it (placement); carry it round a via point to
a container (sorting). Every target of every task is drawn on the table, so that only the instruction
says which sequence to follow. Positions are table metres (x to the robot's right, y forwards).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kuavo_smolvla_ros.tasks import Task, TaskCatalog, default_catalog

#: The conveyor band objects appear on (y), at one of three places along it (x), give or take a jitter.
CONVEYOR_Y = 0.55
CONVEYOR_SLOTS = (-0.15, 0.0, 0.15)
SLOT_JITTER = 0.02
CONVEYOR_X = (CONVEYOR_SLOTS[0] - SLOT_JITTER, CONVEYOR_SLOTS[-1] + SLOT_JITTER)
#: How close a release must be to a target to count.
PLACE_TOLERANCE = 0.05


@dataclass(frozen=True)
class Event:
    """A grasp or release of the object by one hand at a time (seconds) and place."""

    kind: str  # "grasp" | "release"
    arm: str
    xy: tuple[float, float]
    t: float


@dataclass(frozen=True)
class Scene:
    """One task's plan: which hands hold the object, in order, and where it must be put down, in order."""

    task_name: str
    #: The hands that must hold the object, in order (a handover lists two).
    holders: tuple[str, ...]
    #: Release targets, in order; the last is where the object must end.
    targets: tuple[tuple[float, float], ...]
    #: Points the holding hand passes through before the last target (sorting's "turn around").
    via: tuple[tuple[float, float], ...] = ()
    #: Where a handover happens.
    handover: tuple[float, float] | None = None

    def success(self, events: Sequence[Event], held: bool) -> bool:
        """Whether ``events`` (all grasps and releases so far) complete the task and the object is free."""
        if held or not events or events[-1].kind != "release":
            return False
        holders: list[str] = []
        for event in events:
            if event.kind == "grasp" and (not holders or holders[-1] != event.arm):
                holders.append(event.arm)
        if tuple(holders) != self.holders:
            return False
        releases = [np.asarray(e.xy) for e in events if e.kind == "release"]
        if np.linalg.norm(releases[-1] - self.targets[-1]) > PLACE_TOLERANCE:
            return False
        found = 0  # the targets must appear, in order, among the releases
        for xy in releases:
            if found < len(self.targets) and np.linalg.norm(xy - self.targets[found]) <= PLACE_TOLERANCE:
                found += 1
        return found == len(self.targets)


#: Scenes by task name (the names of config/tasks.yaml).
SCENES: dict[str, Scene] = {
    "moving_grasp": Scene("moving_grasp", ("left",), ((-0.35, 0.30), (-0.25, 0.72))),
    "weighing": Scene("weighing", ("right",), ((0.35, 0.30), (0.25, 0.72))),
    "placement": Scene("placement", ("left", "right"), ((0.38, 0.55),), handover=(0.0, 0.35)),
    "sorting": Scene("sorting", ("right",), ((-0.12, 0.25),), via=((0.40, 0.18),)),
}


def all_targets() -> list[tuple[float, float]]:
    """Every placement target of every scene (all drawn on the table)."""
    return [xy for scene in SCENES.values() for xy in scene.targets]


def scene_for(task: Task | str, catalog: TaskCatalog | None = None) -> Scene:
    """The scene of a task (a :class:`Task`, or anything the task list resolves: id, name, alias)."""
    if not isinstance(task, Task):
        task = (catalog or default_catalog()).get(task)
    try:
        return SCENES[task.name]
    except KeyError:
        raise KeyError(f"task {task.name!r} has no simulated scene (scenes: {', '.join(SCENES)})") from None


def object_start(rng: np.random.Generator) -> np.ndarray:
    """A random object position on the conveyor: a random slot, jittered along the belt."""
    return np.array([CONVEYOR_SLOTS[rng.integers(len(CONVEYOR_SLOTS))] + rng.uniform(-SLOT_JITTER, SLOT_JITTER),
                     CONVEYOR_Y])
