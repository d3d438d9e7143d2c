"""The simulated robot's ROS parameters (``sim_robot``): declared with descriptions and ranges, read into
one settings object, as :mod:`kuavo_smolvla_ros.ros.params` does for the policy node."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter

from kuavo_smolvla_ros.contract.profile import (
    DEFAULT_PROFILE,
    ProfileError,
    RobotProfile,
    load_profile,
    parse_overrides,
)
from kuavo_smolvla_ros.ros.params import descriptor
from kuavo_smolvla_ros.sim.render import CAMERA_VIEWS
from kuavo_smolvla_ros.sim.scenes import scene_for
from kuavo_smolvla_ros.tasks import Task, default_catalog

COMMAND_INPUTS = ("robot", "action")


def resolve_task(text: str) -> Task:
    """The simulated task named by ``text`` (id, name or alias of config/tasks.yaml); ``ValueError`` if none."""
    try:
        task = default_catalog().get(text)
        scene_for(task)
    except KeyError as err:
        raise ValueError(err.args[0]) from None
    return task


@dataclass
class SimSettings:
    """Every parameter of ``sim_robot`` (defaults here mirror config/sim.yaml)."""

    task: str = "1"
    seed: int = 100000
    robot_profile: str = DEFAULT_PROFILE
    profile_overrides: tuple[str, ...] = ()
    camera_height: int = 0
    camera_width: int = 0
    wrist_camera_height: int = 0
    wrist_camera_width: int = 0
    camera_rate_hz: float = 30.0
    state_rate_hz: float = 100.0
    claw_state_rate_hz: float = 50.0
    physics_rate_hz: float = 100.0
    command_input: str = "robot"
    publish_clock: bool = False
    jpeg_quality: int = 90
    max_episode_s: float = 20.0
    auto_reset: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent parameter."""
        try:
            resolve_task(self.task)
        except ValueError as err:
            raise ValueError(f"parameter 'task': {err}") from None
        if self.command_input not in COMMAND_INPUTS:
            raise ValueError(f"parameter 'command_input' is {self.command_input!r}; expected one of {COMMAND_INPUTS}")
        for name in ("camera_rate_hz", "state_rate_hz", "claw_state_rate_hz"):
            if getattr(self, name) > self.physics_rate_hz:
                raise ValueError(f"{name} ({getattr(self, name)}) exceeds physics_rate_hz ({self.physics_rate_hz}): "
                                 "every stream is published from the physics tick")
        unknown = [c for c in self.profile.camera_names if c not in CAMERA_VIEWS]
        if unknown:
            raise ValueError(f"robot profile {self.profile.name} has camera(s) {unknown} the simulator does not render "
                             f"(it renders {sorted(CAMERA_VIEWS)})")
        self.camera_sizes()

    @cached_property
    def profile(self) -> RobotProfile:
        """The simulated robot's profile with ``profile_overrides`` applied (``ValueError`` if unusable)."""
        try:
            return load_profile(self.robot_profile, parse_overrides(self.profile_overrides))
        except ProfileError as err:
            raise ValueError(f"parameters robot_profile/profile_overrides: {err}") from None

    def camera_sizes(self) -> dict[str, tuple[int, int]]:
        """(height, width) of each of the profile's cameras: the head camera at camera_height x camera_width
        (0: the profile's size), the wrist cameras at the wrist size (0: the head camera's)."""
        profile_head = next((c.size for c in self.profile.cameras if CAMERA_VIEWS[c.name] == "head"), None)
        head = (self.camera_height, self.camera_width) if self.camera_height and self.camera_width else profile_head
        if head is None:
            raise ValueError(f"robot profile {self.profile.name} gives no camera size: set camera_height and "
                             "camera_width")
        wrist = (self.wrist_camera_height or head[0], self.wrist_camera_width or head[1])
        return {c.name: head if CAMERA_VIEWS[c.name] == "head" else wrist for c in self.profile.cameras}


DESCRIPTIONS = {
    "task": "simulated task (id, name or alias of config/tasks.yaml); a change applies at the next reset",
    "seed": "object-position seed of the first episode; each reset takes the next (seed, seed+1, ...)",
    "robot_profile": "the simulated robot's profile (kuavo4pro, kuavo5, leju_sim, ros2_joint_state or a YAML path): "
                     "which topics and messages it publishes and follows",
    "profile_overrides": "KEY=VALUE overrides of the profile (topics, stamp_source, ...), as for policy_node",
    "camera_height": "head camera image height in pixels (0: the profile's)",
    "camera_width": "head camera image width in pixels (0: the profile's)",
    "wrist_camera_height": "wrist cameras' image height in pixels (0: the head camera's)",
    "wrist_camera_width": "wrist cameras' image width in pixels (0: the head camera's)",
    "camera_rate_hz": "rate of the three JPEG cameras (the robot's: 30 Hz)",
    "state_rate_hz": "rate of the joint state (the real robot publishes /sensors_data_raw at ~500 Hz; at most "
                     "physics_rate_hz)",
    "claw_state_rate_hz": "rate of the end effector's state topic, if the profile has one (/leju_claw_state)",
    "physics_rate_hz": "rate of the one timer that steps the world by the elapsed time and publishes what is due",
    "command_input": "'robot': the profile's arm and end-effector command topics, as the robot (Kuavo: "
                     "/kuavo_arm_traj degrees + /leju_claw_command); 'action': /kuavo_smolvla/action JointState "
                     "(16 layout names)",
    "publish_clock": "publish /clock from the simulation time and stamp messages with it (for nodes run with "
                     "use_sim_time:=true); false: stamps are the node's clock",
    "jpeg_quality": "JPEG quality of the camera images",
    "max_episode_s": "an episode not solved within this time is over (failed)",
    "auto_reset": "start the next episode by itself shortly after success or time-out",
}
RANGES = {
    "seed": (0, 2**31 - 1), "camera_height": (0, 4096), "camera_width": (0, 4096),
    "wrist_camera_height": (0, 4096), "wrist_camera_width": (0, 4096), "jpeg_quality": (1, 100),
    "camera_rate_hz": (0.1, 1000.0), "state_rate_hz": (0.1, 2000.0), "claw_state_rate_hz": (0.1, 2000.0),
    "physics_rate_hz": (1.0, 2000.0), "max_episode_s": (0.1, 86400.0),
}
#: Parameters the running node applies when they are set; all others are read-only.
DYNAMIC = {"task", "auto_reset"}


def declare(node: Node) -> SimSettings:
    """Declare every parameter on ``node`` and return their values (validated; ``ValueError`` otherwise)."""
    defaults = SimSettings()
    values = {}
    for field in fields(SimSettings):
        default = getattr(defaults, field.name)
        initial = (list(default) or Parameter.Type.STRING_ARRAY) if isinstance(default, tuple) else default
        try:
            value = node.declare_parameter(
                field.name, initial, descriptor(field.name, DESCRIPTIONS[field.name], RANGES.get(field.name),
                                                read_only=field.name not in DYNAMIC)).value
            values[field.name] = tuple(value or ()) if isinstance(default, tuple) else value
        except ParameterException as err:  # wrong type or out of range: say which, without a traceback
            raise ValueError(f"parameter {field.name!r}: {err}") from None
    settings = SimSettings(**values)
    settings.validate()
    return settings
