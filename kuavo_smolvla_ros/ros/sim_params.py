"""The simulated robot's ROS parameters (``sim_robot``): declared with descriptions and ranges, read into
one settings object, as :mod:`kuavo_smolvla_ros.ros.params` does for the policy node."""

from __future__ import annotations

from dataclasses import dataclass, fields

from rclpy.exceptions import ParameterException
from rclpy.node import Node

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.ros.params import descriptor
from kuavo_smolvla_ros.sim.scenes import scene_for
from kuavo_smolvla_ros.tasks import Task, default_catalog

STATE_OUTPUTS = ("kuavo", "joint_state")
COMMAND_INPUTS = ("kuavo", "action")


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
    camera_height: int = robot.CAMERA_HEIGHT
    camera_width: int = robot.CAMERA_WIDTH
    wrist_camera_height: int = 0
    wrist_camera_width: int = 0
    camera_rate_hz: float = 30.0
    state_rate_hz: float = 100.0
    claw_state_rate_hz: float = 50.0
    physics_rate_hz: float = 100.0
    state_output: str = "kuavo"
    command_input: str = "kuavo"
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
        if self.state_output not in STATE_OUTPUTS:
            raise ValueError(f"parameter 'state_output' is {self.state_output!r}; expected one of {STATE_OUTPUTS}")
        if self.command_input not in COMMAND_INPUTS:
            raise ValueError(f"parameter 'command_input' is {self.command_input!r}; expected one of {COMMAND_INPUTS}")
        for name in ("camera_rate_hz", "state_rate_hz", "claw_state_rate_hz"):
            if getattr(self, name) > self.physics_rate_hz:
                raise ValueError(f"{name} ({getattr(self, name)}) exceeds physics_rate_hz ({self.physics_rate_hz}): "
                                 "every stream is published from the physics tick")

    def camera_sizes(self) -> dict[str, tuple[int, int]]:
        """(height, width) of each camera; a wrist size of 0 takes the head camera's."""
        head = (self.camera_height, self.camera_width)
        wrist = (self.wrist_camera_height or head[0], self.wrist_camera_width or head[1])
        return {name: head if name == "head_cam_h" else wrist for name in robot.CAMERA_NAMES}


DESCRIPTIONS = {
    "task": "simulated task (id, name or alias of config/tasks.yaml); a change applies at the next reset",
    "seed": "object-position seed of the first episode; each reset takes the next (seed, seed+1, ...)",
    "camera_height": "head camera image height in pixels",
    "camera_width": "head camera image width in pixels",
    "wrist_camera_height": "wrist cameras' image height in pixels (0: the head camera's)",
    "wrist_camera_width": "wrist cameras' image width in pixels (0: the head camera's)",
    "camera_rate_hz": "rate of the three JPEG cameras (the robot's: 30 Hz)",
    "state_rate_hz": "rate of the joint state (the real robot publishes /sensors_data_raw at ~500 Hz; at most "
                     "physics_rate_hz)",
    "claw_state_rate_hz": "rate of /leju_claw_state (state_output kuavo)",
    "physics_rate_hz": "rate of the one timer that steps the world by the elapsed time and publishes what is due",
    "state_output": "'kuavo': /sensors_data_raw SensorsData + /leju_claw_state LejuClawState; 'joint_state': "
                    "/joint_states JointState with the 16 layout names",
    "command_input": "'kuavo': /kuavo_arm_traj JointState (degrees, arm_joint_0..13) + /leju_claw_command "
                     "LejuClawCommand, as the robot; 'action': /kuavo_smolvla/action JointState (16 layout names)",
    "publish_clock": "publish /clock from the simulation time and stamp messages with it (for nodes run with "
                     "use_sim_time:=true); false: stamps are the node's clock",
    "jpeg_quality": "JPEG quality of the camera images",
    "max_episode_s": "an episode not solved within this time is over (failed)",
    "auto_reset": "start the next episode by itself shortly after success or time-out",
}
RANGES = {
    "seed": (0, 2**31 - 1), "camera_height": (8, 4096), "camera_width": (8, 4096),
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
        try:
            values[field.name] = node.declare_parameter(
                field.name, getattr(defaults, field.name),
                descriptor(field.name, DESCRIPTIONS[field.name], RANGES.get(field.name),
                           read_only=field.name not in DYNAMIC)).value
        except ParameterException as err:  # wrong type or out of range: say which, without a traceback
            raise ValueError(f"parameter {field.name!r}: {err}") from None
    settings = SimSettings(**values)
    settings.validate()
    return settings
