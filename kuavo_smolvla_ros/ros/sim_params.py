"""The simulated robot's parameter table (``sim_robot``, :mod:`~kuavo_smolvla_ros.ros.param_table`), as
:mod:`kuavo_smolvla_ros.ros.params` is the policy node's."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from kuavo_smolvla_ros.contract.profile import (
    DEFAULT_PROFILE,
    ProfileError,
    RobotProfile,
    load_profile,
    parse_overrides,
)
from kuavo_smolvla_ros.ros import param_table
from kuavo_smolvla_ros.ros.param_table import param
from kuavo_smolvla_ros.sim.render import CAMERA_JPEG_QUALITY, CAMERA_VIEWS
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


EXECUTABLE = "sim_robot"
NODE_NAME = "kuavo_sim"
SUMMARY = """\
The simulated Kuavo behind a real robot's ROS interface (the robot profile's): publishes its cameras, joint
state and end-effector state, simulator/success and simulator/episode (JSON); follows the profile's arm and
end-effector commands (or kuavo_smolvla/action); service simulator/reset (std_srvs/Trigger). Every name is
relative to the node's namespace except /clock (publish_clock)."""
YAML_HEADER = """\
Parameters of sim_robot, the simulated Kuavo (by default a Kuavo 4 Pro: Leju claws, three JPEG cameras, the
robot's topics, all from the robot profile config/robots/<robot_profile>.yaml).
Bring-up without hardware:  ros2 launch kuavo_smolvla_ros sim.launch.py checkpoint:=/path [namespace:=robot1]
Alone:                      ros2 run kuavo_smolvla_ros sim_robot --ros-args --params-file sim.yaml"""


@dataclass
class SimSettings:
    """Every parameter of ``sim_robot``: the simulator's parameter table."""

    task: str = param("1", "simulated task (id, name or alias of config/tasks.yaml); the instruction topic naming a "
                           "task, or setting this parameter, switches it at the next simulator/reset", dynamic=True)
    seed: int = param(100000, "object-position seed of the first episode; each reset takes the next (seed, "
                              "seed+1, ...)", range=(0, 2**31 - 1))
    robot_profile: str = param(DEFAULT_PROFILE, "the simulated robot's profile (kuavo4pro, kuavo5, leju_sim, "
                                                "ros2_joint_state or a YAML path): which topics and messages it "
                                                "publishes and follows")
    profile_overrides: tuple[str, ...] = param((), "KEY=VALUE overrides of the profile (topics, stamp_source, ...), "
                                                   "as for policy_node, e.g. [cameras.head_cam_h.topic=cam]")
    camera_height: int = param(0, "head camera image height in pixels (0: the profile's, the robot's 480)",
                               range=(0, 4096))
    camera_width: int = param(0, "head camera image width in pixels (0: the profile's, the robot's 640); the "
                                 "policy resizes other sizes with padding to its training size", range=(0, 4096))
    wrist_camera_height: int = param(0, "wrist cameras' image height in pixels (0: the head camera's)",
                                     range=(0, 4096))
    wrist_camera_width: int = param(0, "wrist cameras' image width in pixels (0: the head camera's)",
                                    range=(0, 4096))
    camera_rate_hz: float = param(30.0, "rate of the cameras (the robot's: 30 Hz); at most physics_rate_hz",
                                  range=(0.1, 1000.0))
    state_rate_hz: float = param(100.0, "rate of the joint state (the real robot publishes sensors_data_raw at "
                                        "~500 Hz; at most physics_rate_hz)", range=(0.1, 2000.0))
    claw_state_rate_hz: float = param(50.0, "rate of the end effector's state topic, if the profile has one "
                                            "(leju_claw_state)", range=(0.1, 2000.0))
    physics_rate_hz: float = param(100.0, "rate of the one timer that steps the world by the elapsed time and "
                                          "publishes what is due", range=(1.0, 2000.0))
    command_input: str = param("robot", "robot: the profile's arm and end-effector command topics, as the robot "
                                        "(Kuavo: kuavo_arm_traj degrees + leju_claw_command); action: the policy "
                                        "node's kuavo_smolvla/action JointState (16 layout names)",
                               choices=COMMAND_INPUTS)
    publish_clock: bool = param(False, "publish /clock from the simulation time and stamp messages with it (for "
                                       "nodes run with use_sim_time:=true); false: stamps are the node's clock")
    jpeg_quality: int = param(CAMERA_JPEG_QUALITY, "JPEG quality of the camera images", range=(1, 100))
    max_episode_s: float = param(20.0, "an episode not solved within this time is over (failed), seconds",
                                 range=(0.1, 86400.0))
    auto_reset: bool = param(False, "start the next episode by itself 1 s after success or time-out",
                             dynamic=True)
    wait_for_command: bool = param(True, "an episode's time starts with its first command (a policy still loading "
                                         "does not use up the episode; the world stands still until then); false: "
                                         "at the reset")

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent parameter."""
        try:
            resolve_task(self.task)
        except ValueError as err:
            raise ValueError(f"parameter 'task': {err}") from None
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


def declare(node: Any) -> SimSettings:
    """Declare every parameter on ``node`` and return their values (validated; ``ValueError``, one line)."""
    settings = param_table.declare(node, SimSettings)
    settings.validate()
    return settings


def documented_yaml() -> str:
    """config/sim.yaml, as the table renders it."""
    return param_table.render_yaml(SimSettings, NODE_NAME, YAML_HEADER)


def help_text() -> str:
    """``sim_robot --help``."""
    return param_table.help_text(SimSettings, EXECUTABLE, SUMMARY)
