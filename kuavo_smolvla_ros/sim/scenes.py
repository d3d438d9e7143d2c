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
        if tuple(arm for arm, _ in _holders(events)) != self.holders:
            return False
        releases = [np.asarray(e.xy) for e in events if e.kind == "release"]
        if np.linalg.norm(releases[-1] - self.targets[-1]) > PLACE_TOLERANCE:
            return False
        return _targets_found(releases, self.targets) == len(self.targets)

    @property
    def milestones(self) -> tuple[str, ...]:
        """The grasps and releases the task needs, in order, for reports of how far an episode got: each hand
        of :attr:`holders` holding the object, then the object put down at each target (within
        :data:`PLACE_TOLERANCE`). Passing the :attr:`via` points is not one (no event marks it, and
        :meth:`success` does not ask for it either)."""
        return (tuple(f"{arm} hand holds it" for arm in self.holders)
                + tuple(f"put down at target {i + 1} of {len(self.targets)}" for i in range(len(self.targets))))

    def progress(self, events: Sequence[Event]) -> int:
        """How many of :attr:`milestones` ``events`` reach, in order. The hands count while they follow
        :attr:`holders`; the targets count (in order) among the releases after the last of those hands took
        the object and before any hand outside the plan takes it. Every successful episode reaches all of them;
        one that reaches all of them can still fail if the object does not end at the last target (taken
        again and put down elsewhere)."""
        holders = _holders(events)
        held = 0
        while held < min(len(holders), len(self.holders)) and holders[held][0] == self.holders[held]:
            held += 1
        if held < len(self.holders):
            return held
        start = holders[held - 1][1]
        end = holders[held][1] if len(holders) > held else len(events)  # a hand outside the plan ends it
        releases = [np.asarray(e.xy) for e in events[start:end] if e.kind == "release"]
        return held + _targets_found(releases, self.targets)


def _holders(events: Sequence[Event]) -> list[tuple[str, int]]:
    """The hands that grasped the object, in order, each with the index in ``events`` of its grasp (a hand
    grasping again after itself counted once, at its first grasp)."""
    holders: list[tuple[str, int]] = []
    for index, event in enumerate(events):
        if event.kind == "grasp" and (not holders or holders[-1][0] != event.arm):
            holders.append((event.arm, index))
    return holders


def _targets_found(releases: Sequence[np.ndarray], targets: Sequence[tuple[float, float]]) -> int:
    """How many of ``targets`` appear, in order, among the release positions ``releases``."""
    found = 0
    for xy in releases:
        if found < len(targets) and np.linalg.norm(xy - np.asarray(targets[found])) <= PLACE_TOLERANCE:
            found += 1
    return found


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


def conveyor_slot(seed: int) -> int:
    """The conveyor slot (index into :data:`CONVEYOR_SLOTS`) of episode ``seed``: the slots in turn, so that
    any run of consecutive seeds (the recorded demonstrations 0, 1, ..., the evaluation's 100000, ...) puts the
    object in every slot equally often, give or take one. Drawn at random, 20 demonstrations had 2/6/12 per
    slot, and a policy learns little of a slot it saw twice."""
    return int(seed) % len(CONVEYOR_SLOTS)


def object_start(rng: np.random.Generator, slot: int | None = None) -> np.ndarray:
    """An object position on the conveyor: slot ``slot`` (None: a random one), jittered along the belt
    (uniform within :data:`SLOT_JITTER`, from ``rng``)."""
    if slot is None:
        slot = int(rng.integers(len(CONVEYOR_SLOTS)))
    return np.array([CONVEYOR_SLOTS[slot] + rng.uniform(-SLOT_JITTER, SLOT_JITTER), CONVEYOR_Y])
