"""The policy node's parameter table (:mod:`~kuavo_smolvla_ros.ros.param_table`): every parameter once, with
its default, description, range and dynamic flag; declared, validated and documented from here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.profile import (
    DEFAULT_PROFILE,
    ProfileError,
    RobotProfile,
    load_profile,
    parse_overrides,
)
from kuavo_smolvla_ros.control.controller import CHUNK_TRANSITIONS
from kuavo_smolvla_ros.ros import param_table
from kuavo_smolvla_ros.ros.param_table import param

STALE_BEHAVIOURS = ("finish", "hold")
EXECUTABLE = "policy_node"
NODE_NAME = "kuavo_smolvla_policy"
SUMMARY = """\
SmolVLA on the Kuavo under ROS 2. Subscribes to the robot profile's cameras, joint state, end effector and
instruction topics; publishes kuavo_smolvla/action, kuavo_smolvla/action_chunk, kuavo_smolvla/status,
diagnostics and the profile's robot commands. A managed lifecycle node: configure loads and checks the
checkpoint, activate sends commands (ramping in from the measured state), deactivate holds, cleanup frees the
model (services ~/change_state, ~/get_state; autostart does configure and activate at start); ~/enable
(std_srvs/SetBool) activates or deactivates. Every name is relative: it resolves under the node's namespace
(-r __ns:=/robot1 or launch namespace:=robot1) and can be remapped."""
YAML_HEADER = """\
Parameters of policy_node. The robot's streams (topics, message types, joint layout, end effector, per-stream
max ages, stamps, rate) come from the robot profile (config/robots/<robot_profile>.yaml), the file the bag
converter reads too; the model's shape (chunk, steps, cameras, image size) from the checkpoint. Setting
`checkpoint` alone is enough to run on a Kuavo 4 Pro:
  ros2 launch kuavo_smolvla_ros policy.launch.py checkpoint:=/path [robot_profile:=kuavo5] [namespace:=robot1]
Topics are relative names: under a namespace every one of them (the robot's included) moves with it."""


@dataclass
class NodeSettings:
    """Every parameter of ``policy_node``: the node's parameter table. The robot's streams come from the robot
    profile ``robot_profile`` (``profile_overrides`` and the 0-means-the-profile's parameters adjust it); the
    model's shape from the checkpoint (0 / empty: the checkpoint's; a contradicting value is refused)."""

    checkpoint: str = param("", "SmolVLA checkpoint folder (lerobot format; a lerobot-train step folder works too)",
                            safety=True)
    vlm_path: str = param("", "local VLM folder overriding the one the checkpoint names (empty: the checkpoint's)")
    device: str = param("cpu", "torch device: cpu, cuda or cuda:N", safety=True)
    autostart: bool = param(True, "lifecycle: configure (load and check the checkpoint, warm up) and activate "
                                  "(commands) at start, so one ros2 run / ros2 launch does it all; false: start "
                                  "unconfigured and wait for a lifecycle manager (~/change_state)", safety=True)
    num_steps: int = param(0, "flow-matching (denoising) steps per chunk (0: the checkpoint's own, e.g. 2 for a "
                              "reflow student)", range=(0, 100), dynamic=True, safety=True)
    chunk_size: int = param(0, "actions per predicted chunk (0: the checkpoint's; it may only shrink, a value above "
                               "the checkpoint's is refused)", range=(0, 1000))
    n_action_steps: int = param(0, "actions executed from each chunk before the next takes over (0: the "
                                   "checkpoint's; at most the chunk size)", range=(0, 1000))
    cameras: tuple[str, ...] = param((), "camera names the checkpoint takes (empty: the checkpoint's; a list that "
                                         "differs from the checkpoint's is refused)")
    camera_height: int = param(0, "image height the checkpoint was trained at, pixels (0: the checkpoint's; another "
                                  "value is refused). Frames of any size are resized with padding to it",
                               range=(0, 8192))
    camera_width: int = param(0, "image width the checkpoint was trained at, pixels (0: the checkpoint's; another "
                                 "value is refused)", range=(0, 8192))
    control_rate_hz: float = param(0.0, "rate at which actions are published (0: the robot profile's fps, 10 Hz "
                                        "for Kuavo; tested up to 30 Hz: the model must keep up)",
                                   range=(0.0, 200.0), safety=True)
    blend_steps: int = param(2, "actions blended linearly at the seam between two chunks (chunk_transition "
                                "blend)", range=(0, 50))
    chunk_transition: str = param("blend", "how chunks join: blend (a linear blend over blend_steps) or rtc "
                                           "(lerobot's real-time chunking: the next chunk is generated conditioned "
                                           "on the actions still executing while it is computed)",
                                  choices=CHUNK_TRANSITIONS, safety=True)
    robot_profile: str = param(DEFAULT_PROFILE, "robot profile: kuavo4pro, kuavo5, leju_sim, ros2_joint_state or a "
                                                "path to a profile YAML; it gives every topic, message type, joint "
                                                "mapping, end effector and max age", safety=True)
    profile_overrides: tuple[str, ...] = param((), "KEY=VALUE overrides of the profile (topics, sync max ages, "
                                                   "stamp_source, end_effector.inverted), e.g. "
                                                   "[cameras.head_cam_h.topic=head/image_raw/compressed]")
    default_instruction: str = param("", "instruction used at start (empty: wait for one on the profile's "
                                         "instruction topic, task_instruction)")
    max_input_age_s: float = param(0.0, "cameras and joint state older than this are stale: no inference starts "
                                        "from them (0: the profile's per-stream max ages, as the converter's)",
                                   range=(0.0, 60.0), safety=True)
    stale_behaviour: str = param("finish", "on stale inputs: finish the queued actions then hold, or hold at once",
                                 choices=STALE_BEHAVIOURS, safety=True)
    dry_run: bool = param(False, "compute and publish kuavo_smolvla/* but send nothing to the robot's command topics",
                          dynamic=True, safety=True)
    publish_arm_command: bool = param(True, "publish the arm command on the profile's action topic (Kuavo: "
                                            "kuavo_arm_traj, degrees; the arm in control mode 2)", safety=True)
    publish_gripper_command: bool = param(True, "publish the grippers on the profile's end-effector command topic "
                                                "(Kuavo: leju_claw_command)", safety=True)
    max_joint_velocity: float = param(robot.MAX_ARM_VELOCITY, "safety: largest arm joint change per second (rad/s)",
                                      range=(0.01, 10.0), safety=True)
    max_gripper_velocity: float = param(robot.MAX_GRIPPER_VELOCITY, "safety: largest gripper change per second "
                                                                    "(gripper 0..1 per second)",
                                        range=(0.01, 20.0), safety=True)
    ramp_in_s: float = param(1.0, "after start and re-enable, the allowed change ramps up from zero over this time "
                                  "(s)", range=(0.0, 30.0), safety=True)
    error_retry_s: float = param(1.0, "after a model error, wait this long before the next inference (s)",
                                 range=(0.0, 600.0))
    seed: int = param(-1, "noise seed for reproducible chunks (-1: fresh noise every inference)",
                      range=(-1, 2**31 - 1))
    inference_latency_ticks: int = param(0, "0: the model runs on its own thread beside the control loop (the "
                                            "robot); N >= 1: each chunk is computed in the control tick that asks "
                                            "for it and taken over N ticks later, as closed-loop evaluation in "
                                            "simulated time runs the model (lock-step simulation with "
                                            "use_sim_time, and tests)", range=(0, 100))
    warmup_iterations: int = param(2, "predictions run at start to warm up and measure latency", range=(0, 100))
    torch_threads: int = param(0, "torch CPU threads (0: all cores but one)", range=(0, 1024))
    status_rate_hz: float = param(1.0, "rate of kuavo_smolvla/status and diagnostics", range=(0.1, 50.0))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent parameter (the profile is loaded and checked)."""
        if not self.checkpoint:
            raise ValueError("parameter checkpoint is empty: set it to a SmolVLA checkpoint folder "
                             "(policy_node --help lists the parameters)")
        if self.n_action_steps and self.chunk_size and self.n_action_steps > self.chunk_size:
            raise ValueError(f"n_action_steps ({self.n_action_steps}) must be <= chunk_size ({self.chunk_size})")
        if (self.camera_height > 0) != (self.camera_width > 0):
            raise ValueError("camera_height and camera_width must both be 0 (the checkpoint's) or both set")
        _ = self.profile

    @cached_property
    def profile(self) -> RobotProfile:
        """The robot profile with ``profile_overrides`` and ``max_input_age_s`` applied (``ValueError`` naming
        the parameter if it cannot be loaded)."""
        try:
            overrides = parse_overrides(self.profile_overrides)
            base = load_profile(self.robot_profile)
            if self.max_input_age_s > 0:
                for camera in base.camera_names:
                    overrides.setdefault(f"cameras.{camera}.sync.max_age_s", self.max_input_age_s)
                overrides.setdefault("state.sync.max_age_s", self.max_input_age_s)
            profile = base.with_overrides(overrides)
        except ProfileError as err:
            raise ValueError(f"parameters robot_profile/profile_overrides: {err}") from None
        unlimited = [c.name for c in profile.cameras if c.sync.live_max_age is None]
        if profile.state.sync.live_max_age is None:
            unlimited.append("state")
        if unlimited:
            raise ValueError(f"robot profile {profile.name}: {unlimited} have no max age (sync.max_age_s null): a live "
                             "node must notice a stream that stops; give one (profile_overrides or max_input_age_s)")
        return profile

    @property
    def rate_hz(self) -> float:
        """The control rate: ``control_rate_hz``, or the profile's fps."""
        return self.control_rate_hz or float(self.profile.fps)

    def check_against_checkpoint(self, cameras: list[str], image_shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Refuse (``ValueError``, both values named) a camera list or image size that contradicts the
        checkpoint's (``cameras``; ``image_shapes``: camera -> (channels, height, width)), or a checkpoint
        camera the robot profile lacks."""
        if self.cameras and sorted(self.cameras) != sorted(cameras):
            raise ValueError(f"parameter cameras {list(self.cameras)} contradicts the checkpoint, which takes "
                             f"{list(cameras)} (leave cameras empty to use the checkpoint's)")
        if self.camera_height:
            mine = (self.camera_height, self.camera_width)
            trained = {name: tuple(int(v) for v in image_shapes[name][-2:]) for name in cameras}
            wrong = {name: size for name, size in trained.items() if size != mine}
            if wrong:
                sizes = ", ".join(f"{name} {h}x{w}" for name, (h, w) in wrong.items())
                raise ValueError(f"parameters camera_height/camera_width {mine[0]}x{mine[1]} contradict the "
                                 f"checkpoint, trained at {sizes} (HxW; set 0 to use the checkpoint's: frames of "
                                 "any size are resized with padding to it)")
        missing = [c for c in cameras if c not in self.profile.camera_names]
        if missing:
            raise ValueError(f"the checkpoint needs cameras {missing} that robot profile {self.profile.name} does not "
                             f"provide (its cameras: {list(self.profile.camera_names)})")


def declare(node: Any) -> NodeSettings:
    """Declare every parameter on ``node`` and return their values (validated; ``ValueError``, one line)."""
    settings = param_table.declare(node, NodeSettings)
    settings.validate()
    return settings


def trained_sizes(image_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, int]]:
    """Per camera the (height, width) the checkpoint was trained at (from (channels, height, width))."""
    return {name: (int(shape[-2]), int(shape[-1])) for name, shape in image_shapes.items()}


def documented_yaml() -> str:
    """config/policy.yaml, as the table renders it."""
    return param_table.render_yaml(NodeSettings, NODE_NAME, YAML_HEADER)


def help_text() -> str:
    """``policy_node --help``."""
    return param_table.help_text(NodeSettings, EXECUTABLE, SUMMARY)
