"""Start the Kuavo SmolVLA policy node: ``kuavo_smolvla_ros/policy_node``, named ``kuavo_smolvla_policy``.

Examples::

    ros2 launch kuavo_smolvla_ros policy.launch.py checkpoint:=/path dry_run:=true
    ros2 launch kuavo_smolvla_ros policy.launch.py params_file:=/my/policy.yaml device:=cuda:1 namespace:=robot1

Parameters come from ``params_file`` (default: the installed ``config/policy.yaml``), then from the
launch arguments ``checkpoint``, ``device``, ``dry_run``, ``use_sim_time``, ``robot_profile`` and
``autostart``. An argument left empty does not override the file. Overrides are plain Python values:
launch_ros keeps strings as strings (it YAML-quotes them) and passes ``dry_run`` / ``use_sim_time`` /
``autostart`` as booleans. The node checks every value
against its parameter table (``policy_node --help``): a bad one stops it with one line (exit 2), an unknown
one is logged as a warning with the closest known name.

The node is a managed lifecycle node. ``autostart:=true`` (the default) makes it configure (load and check
the checkpoint, warm up) and activate (send commands) by itself, so this one command starts it as before.
``autostart:=false`` starts it as a ``launch_ros.actions.LifecycleNode`` that waits unconfigured for a
lifecycle manager (a nav2-style manager, launch ``ChangeState`` events, or ``ros2 lifecycle set
/kuavo_smolvla_policy configure`` then ``activate``).

``namespace:=robot1`` moves every topic and service of the node, the robot's included (they are relative
names): ``/robot1/kuavo_smolvla/action``, ``/robot1/sensors_data_raw``, ``/robot1/kuavo_smolvla_policy/enable``.
Run ``ros2 launch kuavo_smolvla_ros policy.launch.py --show-args`` for the list.
"""

import os
import re

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = "kuavo_smolvla_ros"
EXECUTABLE = "policy_node"
NODE_NAME = "kuavo_smolvla_policy"

# name -> (default, description); the params_file default is resolved in generate_launch_description().
ARGUMENTS: dict[str, tuple[str | None, str]] = {
    "checkpoint": ("", "SmolVLA checkpoint folder; empty keeps the params file's value"),
    "params_file": (None, "node parameters YAML (default: share/kuavo_smolvla_ros/config/policy.yaml)"),
    "device": ("", "torch device: cpu, cuda or cuda:N; empty keeps the params file's value"),
    "dry_run": ("", "true: compute and publish chunks but send no robot commands; empty keeps the params file's"),
    "use_sim_time": ("false", "use /clock (simulator or rosbag) instead of the wall clock: true or false"),
    "namespace": ("", "ROS namespace of the node and of every topic and service it uses, the robot's included, "
                      "e.g. robot1 (empty: the root namespace)"),
    "robot_profile": ("", "robot profile (kuavo4pro, kuavo5, leju_sim, ros2_joint_state or a YAML path): the robot's "
                          "topics and messages; empty keeps the params file's"),
    "autostart": ("true", "true: the node configures (loads the checkpoint) and activates (sends commands) by itself; "
                          "false: it starts as a managed lifecycle node, unconfigured, and waits for a lifecycle "
                          "manager (ros2 lifecycle set <node> configure, then activate)"),
}
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def parse_bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"launch argument {name}:={value!r} is invalid: use true or false (or leave it empty)")
    return lowered == "true"


def node_overrides(values: dict[str, str]) -> dict[str, str | bool]:
    """Parameters overriding the params file: only the arguments given a non-empty value, typed."""
    overrides: dict[str, str | bool] = {}
    values = {name: values.get(name, "").strip()
              for name in ("checkpoint", "device", "dry_run", "use_sim_time", "robot_profile", "autostart")}
    for name in ("checkpoint", "robot_profile"):
        if values[name]:
            overrides[name] = values[name]
    if values["device"]:
        if not _DEVICE.fullmatch(values["device"]):
            raise ValueError(f"launch argument device:={values['device']!r} is invalid: use cpu, cuda or cuda:N")
        overrides["device"] = values["device"]
    for name in ("dry_run", "use_sim_time", "autostart"):
        if values[name]:
            overrides[name] = parse_bool(name, values[name])
    return overrides


def launch_setup(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    params_file = values["params_file"]
    # launch_ros only warns and skips a parameter file that does not exist; refuse to start without it.
    if not os.path.isfile(params_file):
        raise FileNotFoundError(f"launch argument params_file:={params_file!r} is not a file")
    # Large shared-memory segments for raw camera frames, unless the user chose a profile already.
    profile = os.path.join(get_package_share_directory(PACKAGE), "config", "fastdds_profile.xml")
    env = {} if "FASTDDS_DEFAULT_PROFILES_FILE" in os.environ else {"FASTDDS_DEFAULT_PROFILES_FILE": profile}
    overrides = node_overrides(values)
    # autostart false: launch_ros's LifecycleNode, which follows the node's transition events and takes launch
    # ChangeState events; the node itself waits unconfigured for them (or for another lifecycle manager).
    action = LifecycleNode if overrides.get("autostart") is False else Node
    return [
        action(
            package=PACKAGE,
            executable=EXECUTABLE,
            name=NODE_NAME,
            namespace=values["namespace"],
            parameters=[params_file, overrides],
            output="screen",
            emulate_tty=True,
            additional_env=env,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "policy.yaml")
    declared = [
        DeclareLaunchArgument(name, default_value=default_params if default is None else default,
                              description=description)
        for name, (default, description) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=launch_setup)])
