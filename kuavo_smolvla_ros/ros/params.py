"""The policy node's ROS parameters: declared with descriptions and ranges, read into one settings object."""

from __future__ import annotations

from dataclasses import dataclass, fields

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.node import Node

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.sync import StampSource

CAMERA_TYPES = ("compressed", "raw")
STATE_SOURCES = ("kuavo", "joint_state")
STAMP_SOURCES = tuple(StampSource)


@dataclass
class NodeSettings:
    """Every parameter of ``policy_node`` (defaults here mirror config/policy.yaml)."""

    checkpoint: str = ""
    vlm_path: str = ""
    device: str = "cpu"
    #: 0: the checkpoint's own (10 for a flow-matching checkpoint, 1-2 for a reflow student).
    num_steps: int = 0
    chunk_size: int = 50
    n_action_steps: int = 8
    control_rate_hz: float = robot.CONTROL_RATE_HZ
    blend_steps: int = 2
    camera_names: tuple[str, ...] = robot.CAMERA_NAMES
    camera_topics: tuple[str, ...] = tuple(c.topic for c in robot.CAMERAS)
    camera_types: tuple[str, ...] = ("compressed",) * len(robot.CAMERAS)
    camera_height: int = robot.CAMERA_HEIGHT
    camera_width: int = robot.CAMERA_WIDTH
    state_source: str = "kuavo"
    sensors_topic: str = robot.TOPICS.sensors
    gripper_type: str = "leju_claw"
    gripper_state_topic: str = robot.TOPICS.claw_state
    claw_inverted: bool = False
    joint_state_topic: str = robot.TOPICS.joint_states
    instruction_topic: str = robot.TOPICS.task_instruction
    default_instruction: str = ""
    max_input_age_s: float = 0.5
    stamp_source: str = "receive"
    stale_behaviour: str = "finish"
    dry_run: bool = False
    publish_arm_command: bool = True
    arm_command_topic: str = robot.TOPICS.arm_command
    publish_gripper_command: bool = True
    gripper_command_topic: str = robot.TOPICS.claw_command
    max_joint_velocity: float = robot.MAX_ARM_VELOCITY
    max_gripper_velocity: float = robot.MAX_GRIPPER_VELOCITY
    ramp_in_s: float = 1.0
    error_retry_s: float = 1.0
    seed: int = -1
    warmup_iterations: int = 2
    torch_threads: int = 0
    status_rate_hz: float = 1.0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent parameter."""
        if not self.checkpoint:
            raise ValueError("parameter 'checkpoint' is empty: set it to a SmolVLA checkpoint folder")
        counts = {len(self.camera_names), len(self.camera_topics), len(self.camera_types)}
        if len(counts) != 1 or not self.camera_names:
            raise ValueError("camera_names, camera_topics and camera_types must be non-empty and of equal length")
        bad = [t for t in self.camera_types if t not in CAMERA_TYPES]
        if bad:
            raise ValueError(f"camera_types {bad} not in {CAMERA_TYPES}")
        if self.state_source not in STATE_SOURCES:
            raise ValueError(f"state_source {self.state_source!r} not in {STATE_SOURCES}")
        if self.gripper_type not in robot.GRIPPERS:
            raise ValueError(f"gripper_type {self.gripper_type!r} not in {sorted(robot.GRIPPERS)}")
        if self.stale_behaviour not in ("finish", "hold"):
            raise ValueError("stale_behaviour must be 'finish' or 'hold'")
        if self.stamp_source not in STAMP_SOURCES:
            raise ValueError(f"stamp_source {self.stamp_source!r} not in {STAMP_SOURCES}")
        if self.n_action_steps > self.chunk_size:
            raise ValueError(f"n_action_steps ({self.n_action_steps}) must be <= chunk_size ({self.chunk_size})")

    @property
    def expected_image_size(self) -> tuple[int, int] | None:
        return (self.camera_height, self.camera_width) if self.camera_height and self.camera_width else None


_DESCRIPTIONS = {
    "checkpoint": "SmolVLA checkpoint folder (lerobot format; a lerobot-train step folder works too)",
    "vlm_path": "local VLM folder overriding the one recorded in the checkpoint (empty: recorded path)",
    "device": "torch device: cpu, cuda or cuda:N",
    "num_steps": "flow-matching (denoising) steps per chunk (0: the checkpoint's own, e.g. 2 for a reflow student)",
    "chunk_size": "actions per predicted chunk (at most the checkpoint's)",
    "n_action_steps": "actions executed from each chunk before the next takes over",
    "control_rate_hz": "rate at which actions are published (Kuavo data rate: 10 Hz)",
    "blend_steps": "actions blended linearly at the seam between two chunks",
    "camera_names": "policy camera names, in the order of camera_topics",
    "camera_topics": "camera topics (remap here for swapped wrist cameras)",
    "camera_types": "per camera: 'compressed' (sensor_msgs/CompressedImage) or 'raw' (sensor_msgs/Image)",
    "camera_height": "expected image height in pixels (0: any)",
    "camera_width": "expected image width in pixels (0: any)",
    "state_source": "'kuavo': SensorsData + gripper state; 'joint_state': sensor_msgs/JointState with the 16 names",
    "sensors_topic": "kuavo_msgs SensorsData topic (state_source kuavo)",
    "gripper_type": "end effector: leju_claw, sim_gripper or dex_hand (scalings from the robot facts)",
    "gripper_state_topic": "gripper state topic (LejuClawState for leju_claw, JointState otherwise)",
    "claw_inverted": "true if the claw's raw 0 means closed",
    "joint_state_topic": "sensor_msgs/JointState topic (state_source joint_state)",
    "instruction_topic": "std_msgs/String topic selecting the task (alias from tasks.yaml or free text)",
    "default_instruction": "instruction used at start (empty: wait for one on instruction_topic)",
    "max_input_age_s": "inputs older than this are stale: no inference starts from them",
    "stamp_source": "time inputs are filed under: 'receive' (arrival; Kuavo's header stamps are unreliable, and the "
                    "bag converter's default) or 'header' (the message stamp, arrival if unset)",
    "stale_behaviour": "on stale inputs: 'finish' the queued actions then hold, or 'hold' at once",
    "dry_run": "compute and publish on /kuavo_smolvla/* but send nothing to the robot adapters",
    "publish_arm_command": "publish the 14 arm joints in degrees on arm_command_topic",
    "arm_command_topic": "Kuavo arm command topic (sensor_msgs/JointState, degrees)",
    "publish_gripper_command": "publish the grippers on gripper_command_topic, in the gripper_type's message",
    "gripper_command_topic": "gripper command topic: LejuClawCommand 0..100 (leju_claw), RobotHandPosition "
                             "(dex_hand, e.g. /control_robot_hand_position), JointState 0..140 (sim_gripper)",
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
    "num_steps": (0, 100), "chunk_size": (1, 1000), "n_action_steps": (1, 1000), "blend_steps": (0, 50),
    "camera_height": (0, 10000), "camera_width": (0, 10000), "seed": (-1, 2**31 - 1),
    "warmup_iterations": (0, 100), "torch_threads": (0, 1024),
    "control_rate_hz": (0.5, 200.0), "max_input_age_s": (0.01, 60.0), "max_joint_velocity": (0.01, 10.0),
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
        value = node.declare_parameter(field.name, list(default) if isinstance(default, tuple) else default,
                                       _descriptor(field.name, default)).value
        values[field.name] = tuple(value) if isinstance(default, tuple) else value
    settings = NodeSettings(**values)
    settings.validate()
    return settings
