"""The policy node's ROS parameters: declared with descriptions and ranges, read into one settings object."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.parameter import Parameter

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.profile import (
    DEFAULT_PROFILE,
    ProfileError,
    RobotProfile,
    load_profile,
    parse_overrides,
)

STALE_BEHAVIOURS = ("finish", "hold")


@dataclass
class NodeSettings:
    """Every parameter of ``policy_node`` (defaults here mirror config/policy.yaml). The robot's streams
    (topics, message types, joint layout, end effector, per-stream max ages, stamps) come from the robot
    profile ``robot_profile``; ``profile_overrides`` and the 0-means-the-profile's parameters adjust it."""

    checkpoint: str = ""
    vlm_path: str = ""
    device: str = "cpu"
    #: 0: the checkpoint's own (10 for a flow-matching checkpoint, 1-2 for a reflow student).
    num_steps: int = 0
    #: 0: the checkpoint's own (it may only shrink).
    chunk_size: int = 0
    #: 0: the checkpoint's own (8 for this project's checkpoints).
    n_action_steps: int = 0
    #: 0: the profile's fps.
    control_rate_hz: float = 0.0
    blend_steps: int = 2
    robot_profile: str = DEFAULT_PROFILE
    profile_overrides: tuple[str, ...] = ()
    camera_height: int = 0
    camera_width: int = 0
    default_instruction: str = ""
    #: 0: the profile's per-stream max ages.
    max_input_age_s: float = 0.0
    stale_behaviour: str = "finish"
    dry_run: bool = False
    publish_arm_command: bool = True
    publish_gripper_command: bool = True
    max_joint_velocity: float = robot.MAX_ARM_VELOCITY
    max_gripper_velocity: float = robot.MAX_GRIPPER_VELOCITY
    ramp_in_s: float = 1.0
    error_retry_s: float = 1.0
    seed: int = -1
    warmup_iterations: int = 2
    torch_threads: int = 0
    status_rate_hz: float = 1.0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent parameter (the profile is loaded and checked)."""
        if not self.checkpoint:
            raise ValueError("parameter 'checkpoint' is empty: set it to a SmolVLA checkpoint folder")
        if self.stale_behaviour not in STALE_BEHAVIOURS:
            raise ValueError(f"stale_behaviour must be one of {STALE_BEHAVIOURS}, got {self.stale_behaviour!r}")
        if self.n_action_steps and self.chunk_size and self.n_action_steps > self.chunk_size:
            raise ValueError(f"n_action_steps ({self.n_action_steps}) must be <= chunk_size ({self.chunk_size})")
        if (self.camera_height > 0) != (self.camera_width > 0):
            raise ValueError("camera_height and camera_width must both be 0 (the profile's) or both set")
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

    def image_sizes(self) -> dict[str, tuple[int, int] | None]:
        """Per camera the (height, width) frames must have: camera_height/width if set, else the profile's
        (None: any size)."""
        size = (self.camera_height, self.camera_width) if self.camera_height else None
        return {c.name: size or c.size for c in self.profile.cameras}


_DESCRIPTIONS = {
    "checkpoint": "SmolVLA checkpoint folder (lerobot format; a lerobot-train step folder works too)",
    "vlm_path": "local VLM folder overriding the one recorded in the checkpoint (empty: recorded path)",
    "device": "torch device: cpu, cuda or cuda:N",
    "num_steps": "flow-matching (denoising) steps per chunk (0: the checkpoint's own, e.g. 2 for a reflow student)",
    "chunk_size": "actions per predicted chunk (0: the checkpoint's; a value above it is refused)",
    "n_action_steps": "actions executed from each chunk before the next takes over (0: the checkpoint's)",
    "control_rate_hz": "rate at which actions are published (0: the robot profile's fps, 10 Hz for Kuavo)",
    "blend_steps": "actions blended linearly at the seam between two chunks",
    "robot_profile": "robot profile: a shipped name (kuavo4pro, kuavo5, leju_sim, ros2_joint_state) or a path to a "
                     "profile YAML; it gives every topic, message type, joint mapping, end effector and max age",
    "profile_overrides": "KEY=VALUE overrides of the profile (topics, sync max ages, stamp_source, "
                         "end_effector.inverted), e.g. cameras.head_cam_h.topic=/head/image_raw/compressed",
    "camera_height": "image height every camera must have, pixels (0: the profile's)",
    "camera_width": "image width every camera must have, pixels (0: the profile's)",
    "default_instruction": "instruction used at start (empty: wait for one on the profile's instruction topic)",
    "max_input_age_s": "cameras and joint state older than this are stale: no inference starts from them (0: the "
                       "profile's per-stream max ages, as the bag converter uses them)",
    "stale_behaviour": "on stale inputs: 'finish' the queued actions then hold, or 'hold' at once",
    "dry_run": "compute and publish on /kuavo_smolvla/* but send nothing to the robot adapters",
    "publish_arm_command": "publish the arm command on the profile's action topic (Kuavo: /kuavo_arm_traj, degrees)",
    "publish_gripper_command": "publish the grippers on the profile's end-effector command topic, in its message",
    "max_joint_velocity": "safety: largest arm joint change per second (rad/s)",
    "max_gripper_velocity": "safety: largest gripper change per second (units of 0..1 per second)",
    "ramp_in_s": "after start and re-enable, the allowed change ramps up from zero over this time",
    "error_retry_s": "after a model error, wait this long before the next inference",
    "seed": "noise seed for reproducible chunks (-1: fresh noise every inference)",
    "warmup_iterations": "predictions run at start to warm up and measure latency",
    "torch_threads": "torch CPU threads (0: all cores but one)",
    "status_rate_hz": "rate of /kuavo_smolvla/status and /diagnostics",
}

_RANGES = {
    "num_steps": (0, 100), "chunk_size": (0, 1000), "n_action_steps": (0, 1000), "blend_steps": (0, 50),
    "camera_height": (0, 10000), "camera_width": (0, 10000), "seed": (-1, 2**31 - 1),
    "warmup_iterations": (0, 100), "torch_threads": (0, 1024),
    "control_rate_hz": (0.0, 200.0), "max_input_age_s": (0.0, 60.0), "max_joint_velocity": (0.01, 10.0),
    "max_gripper_velocity": (0.01, 20.0), "ramp_in_s": (0.0, 30.0), "error_retry_s": (0.0, 600.0),
    "status_rate_hz": (0.1, 50.0),
}
#: Parameters the running node applies when they are set (``ros2 param set``); all others are read-only.
DYNAMIC = {"dry_run", "num_steps"}


def descriptor(name: str, description: str, value_range: tuple | None = None,
               read_only: bool = True) -> ParameterDescriptor:
    """A parameter descriptor with a description and, for numbers, an inclusive range."""
    result = ParameterDescriptor(name=name, description=description, read_only=read_only)
    if value_range is not None:
        low, high = value_range
        if isinstance(low, float):
            result.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
        else:
            result.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
    return result


def _descriptor(name: str, default) -> ParameterDescriptor:
    result = descriptor(name, _DESCRIPTIONS[name], _RANGES.get(name), read_only=name not in DYNAMIC)
    if isinstance(default, tuple):
        result.type = ParameterType.PARAMETER_STRING_ARRAY
    return result


def declare(node: Node) -> NodeSettings:
    """Declare every parameter on ``node`` and return their values (validated)."""
    defaults = NodeSettings()
    values = {}
    for field in fields(NodeSettings):
        default = getattr(defaults, field.name)
        initial = (list(default) or Parameter.Type.STRING_ARRAY) if isinstance(default, tuple) else default
        value = node.declare_parameter(field.name, initial, _descriptor(field.name, default)).value
        values[field.name] = tuple(value or ()) if isinstance(default, tuple) else value
    settings = NodeSettings(**values)
    settings.validate()
    return settings
