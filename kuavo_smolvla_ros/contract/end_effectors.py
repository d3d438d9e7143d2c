"""End effectors: one class per kind, each knowing its messages and both directions of its units.

The layout stores each gripper as one value in 0..1 (0 open, 1 closed, see :mod:`kuavo_smolvla_ros.robot`).
An end effector turns its state and command messages into ``(left, right)`` layout values and back:
``unit = raw / scale`` (flipped to ``1 - unit`` when ``inverted``), with the scales of the robot profile.
Decoders refuse what would be silently wrong: duplicate or unknown names, non-finite values, and values that
land outside 0..1 by more than :data:`UNIT_MARGIN` (a wrong scale, e.g. 0..255 commands read on a 0..140
scale). Encoders return plain field mappings (see :mod:`kuavo_smolvla_ros.contract.fields`), so ROS 2
messages and bag records are built from the same values. No ROS imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from kuavo_smolvla_ros.contract.fields import Fields, header, joint_state_fields

#: Decoded gripper values may exceed 0..1 by this much (sensor noise); further out is refused.
UNIT_MARGIN = 0.05
Units = tuple[float, float]


class NonFiniteError(ValueError):
    """A message whose values are NaN or infinite (well formed, unusable)."""


def named_values(names: Sequence[str], positions: Sequence[float], wanted: Sequence[str], what: str,
                 allow_extra: bool = False) -> np.ndarray:
    """``positions`` picked by name in the order of ``wanted`` (float64).

    Raises ``ValueError`` when names and positions differ in count, a name repeats, a wanted name is
    missing, or (unless ``allow_extra``) an unknown name is present.
    """
    names, positions = list(names), list(positions)
    if len(names) != len(positions):
        raise ValueError(f"{what} has {len(names)} names and {len(positions)} positions")
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in index:
            raise ValueError(f"{what} names {name!r} twice")
        index[name] = i
    if not allow_extra:
        wanted_set = set(wanted)
        unknown = [n for n in names if n not in wanted_set]
        if unknown:
            raise ValueError(f"{what} has unknown name(s) {unknown[:3]} (expected {list(wanted)})")
    missing = [n for n in wanted if n not in index]
    if missing:
        raise ValueError(f"{what} lacks {missing[:3]}{' ...' if len(missing) > 3 else ''} (names: {names[:8]})")
    return np.array([float(positions[index[n]]) for n in wanted], dtype=np.float64)


@dataclass(frozen=True)
class EndEffector:
    """Two grippers (left, right) of one kind; ``names`` are their names in the messages.

    ``state_scale``/``command_scale``: the raw value of a fully closed gripper in the state and command
    messages; ``inverted``: raw 0 means closed.
    """

    names: tuple[str, str]
    state_scale: float
    command_scale: float
    inverted: bool = False

    #: Profile name of the kind; message type short names (``sensor_msgs/JointState`` -> ``JointState``).
    kind: ClassVar[str] = ""
    state_type: ClassVar[str] = ""
    command_type: ClassVar[str] = ""

    # ------------------------------------------------------------------------------------- units
    def to_unit(self, raw: float, scale: float) -> float:
        unit = float(raw) / scale
        return 1.0 - unit if self.inverted else unit

    def to_raw(self, unit: float, scale: float) -> float:
        value = 1.0 - float(unit) if self.inverted else float(unit)
        return value * scale

    def _units(self, raw: Sequence[float], scale: float, what: str) -> Units:
        values = np.asarray(raw, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise NonFiniteError(f"non-finite {what}")
        units = tuple(self.to_unit(v, scale) for v in values)
        for side, unit, value in zip(("left", "right"), units, values, strict=True):
            if not -UNIT_MARGIN <= unit <= 1 + UNIT_MARGIN:
                raise ValueError(f"{what}: {side} value {value:g} is {unit:.2f} on the 0..{scale:g} scale, outside "
                                 "0..1 (check the robot profile's end_effector scales)")
        return units  # type: ignore[return-value]

    def command_raw(self, units: Sequence[float]) -> list[float]:
        """Raw command values for (left, right) layout values, clipped to the command range."""
        return [float(np.clip(self.to_raw(u, self.command_scale), 0.0, self.command_scale)) for u in units]

    def state_raw(self, units: Sequence[float]) -> list[float]:
        return [self.to_raw(u, self.state_scale) for u in units]

    # ------------------------------------------------------------------------- per message kind
    def decode_state(self, msg: Any) -> Units:
        """(left, right) layout values of a state message; ``ValueError`` with the reason if unusable."""
        raise NotImplementedError

    def decode_command(self, msg: Any) -> Units:
        """(left, right) layout values of a (recorded) command message; ``ValueError`` if unusable."""
        raise NotImplementedError

    def state_fields(self, units: Sequence[float], stamp: float, codes: Sequence[int] | None = None) -> Fields:
        """The state message's fields for (left, right) layout values at ``stamp`` (s)."""
        raise NotImplementedError

    def command_fields(self, units: Sequence[float], stamp: float) -> Fields:
        """The command message's fields for (left, right) layout values at ``stamp`` (s)."""
        raise NotImplementedError


class _NamedPair(EndEffector):
    """Grippers reported as a name/position list: by name, or by position when the names are empty."""

    def _pair(self, names: Sequence[str], positions: Sequence[float], what: str) -> np.ndarray:
        if not list(names) and len(positions) == 2:
            return np.asarray(positions, dtype=np.float64)
        return named_values(names, positions, self.names, what)


@dataclass(frozen=True)
class LejuClaw(_NamedPair):
    """Leju claws: ``kuavo_msgs/lejuClawState`` and ``lejuClawCommand``, positions 0 open .. 100 closed
    (Leju's API docs and SDK; some message comments say the opposite, hence ``inverted``)."""

    kind: ClassVar[str] = "leju_claw"
    state_type: ClassVar[str] = "LejuClawState"
    command_type: ClassVar[str] = "LejuClawCommand"
    #: lejuClawState per-claw codes (msg/LejuClawState.msg).
    REACHED: ClassVar[int] = 2

    def decode_state(self, msg: Any) -> Units:
        data = getattr(msg, "data", msg)
        return self._units(self._pair(data.name, data.position, "claw state"), self.state_scale, "claw state")

    def decode_command(self, msg: Any) -> Units:
        data = getattr(msg, "data", msg)
        return self._units(self._pair(data.name, data.position, "claw command"), self.command_scale, "claw command")

    def state_fields(self, units, stamp, codes=None) -> Fields:
        return {"header": header(stamp), "state": list(codes) if codes is not None else [self.REACHED] * 2,
                "data": {"name": list(self.names), "position": self.state_raw(units), "velocity": [0.0, 0.0],
                         "effort": [0.0, 0.0]}}

    def command_fields(self, units, stamp) -> Fields:
        return {"header": header(stamp), "data": {"name": list(self.names), "position": self.command_raw(units),
                                                  "velocity": [50.0, 50.0], "effort": [1.0, 1.0]}}


@dataclass(frozen=True)
class JointStateGripper(_NamedPair):
    """Simulator grippers: ``sensor_msgs/JointState`` state and command with one named joint per gripper
    (Leju's simulator: ``left_gripper_joint``/``right_gripper_joint``, state 0..0.8, commands 0..255)."""

    kind: ClassVar[str] = "sim_gripper"
    state_type: ClassVar[str] = "JointState"
    command_type: ClassVar[str] = "JointState"

    def decode_state(self, msg: Any) -> Units:
        return self._units(self._pair(msg.name, msg.position, "gripper state"), self.state_scale, "gripper state")

    def decode_command(self, msg: Any) -> Units:
        return self._units(self._pair(msg.name, msg.position, "gripper command"), self.command_scale,
                           "gripper command")

    def state_fields(self, units, stamp, codes=None) -> Fields:
        return joint_state_fields(self.names, self.state_raw(units), stamp)

    def command_fields(self, units, stamp) -> Fields:
        return joint_state_fields(self.names, self.command_raw(units), stamp)


@dataclass(frozen=True)
class DexHand(EndEffector):
    """Dexterous hands: six fingers per hand, 0 open .. 100 closed; the gripper value is the fingers' mean.
    State: a ``JointState`` of twelve positions (left six, right six); command: ``robotHandPosition``."""

    kind: ClassVar[str] = "dex_hand"
    state_type: ClassVar[str] = "JointState"
    command_type: ClassVar[str] = "RobotHandPosition"
    FINGERS: ClassVar[int] = 6

    def decode_state(self, msg: Any) -> Units:
        fingers = np.asarray(msg.position, dtype=np.float64)
        if fingers.size != 2 * self.FINGERS:
            raise ValueError(f"hand state has {fingers.size} positions, expected {2 * self.FINGERS}")
        n = self.FINGERS
        return self._units([fingers[:n].mean(), fingers[n:].mean()], self.state_scale, "hand state")

    def decode_command(self, msg: Any) -> Units:
        left = np.asarray(msg.left_hand_position, dtype=np.float64)
        right = np.asarray(msg.right_hand_position, dtype=np.float64)
        if left.size != self.FINGERS or right.size != self.FINGERS:
            raise ValueError(f"hand command needs {self.FINGERS} fingers per hand, got {left.size} and {right.size}")
        return self._units([left.mean(), right.mean()], self.command_scale, "hand command")

    def state_fields(self, units, stamp, codes=None) -> Fields:
        raw = self.state_raw(units)
        names = [f"{side}_finger_{i}" for side in self.names for i in range(1, self.FINGERS + 1)]
        return joint_state_fields(names, [raw[0]] * self.FINGERS + [raw[1]] * self.FINGERS, stamp)

    def command_fields(self, units, stamp) -> Fields:
        left, right = (round(v) for v in self.command_raw(units))
        return {"header": header(stamp), "left_hand_position": [left] * self.FINGERS,
                "right_hand_position": [right] * self.FINGERS}


#: End-effector kinds by their profile name (``end_effector.type``).
KINDS: Mapping[str, type[EndEffector]] = {cls.kind: cls for cls in (LejuClaw, JointStateGripper, DexHand)}
