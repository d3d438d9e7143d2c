"""Bring-up without hardware: the simulated Kuavo (``sim_robot``, named ``kuavo_sim``) and the policy node.

Examples::

    ros2 launch kuavo_smolvla_ros sim.launch.py checkpoint:=/path task:=weighing
    ros2 launch kuavo_smolvla_ros sim.launch.py policy:=false auto_reset:=true   # the simulator alone
    ros2 launch kuavo_smolvla_ros sim.launch.py checkpoint:=/path use_sim_time:=true  # both on /clock

The policy node is built by ``policy.launch.py`` (loaded from this folder), from the same arguments and
with the same meaning: ``checkpoint``, ``params_file``, ``device``, ``dry_run``, ``use_sim_time``,
``namespace``, ``robot_profile`` (which the simulator then speaks too). The simulator's parameters come from
``sim_params_file`` (default: the installed ``config/sim.yaml``; camera sizes and rates live there; the policy
resizes frames of another size with padding to the size its checkpoint was trained at), then from ``task``,
``seed`` and ``auto_reset`` when not empty. ``namespace`` puts both nodes, and every topic and service they
use, under it (two simulated robots side by side: ``namespace:=robot1`` and ``namespace:=robot2``).
``use_sim_time:=true`` makes the simulator publish ``/clock`` (``publish_clock``; ``/clock`` is the one
global name, as rclpy's time source reads it) and the policy follow it; the simulator itself always runs on
the wall clock. Run
``ros2 launch kuavo_smolvla_ros sim.launch.py --show-args`` for the list.
"""

import importlib.util
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "kuavo_smolvla_ros"
EXECUTABLE = "sim_robot"
NODE_NAME = "kuavo_sim"


def _load_policy_launch():
    """policy.launch.py, from the folder this file is in (source tree or share/kuavo_smolvla_ros/launch)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "policy.launch.py")
    spec = importlib.util.spec_from_file_location("kuavo_smolvla_policy_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


policy_launch = _load_policy_launch()

# name -> (default, description); the policy's arguments first, then the simulator's. The
# sim_params_file default is resolved in generate_launch_description().
ARGUMENTS: dict[str, tuple[str | None, str]] = {
    **policy_launch.ARGUMENTS,
    "policy": ("true", "false: start the simulator only (no checkpoint needed)"),
    "sim_params_file": (None, "simulator parameters YAML (default: share/kuavo_smolvla_ros/config/sim.yaml)"),
    "task": ("", "simulated task of the first episode (id, name or alias); empty keeps the sim params file's"),
    "seed": ("", "object-position seed of the first episode (integer >= 0); empty keeps the sim params file's"),
    "auto_reset": ("", "true: start the next episode after success or time-out; empty keeps the sim params file's"),
}


def sim_overrides(values: dict[str, str]) -> dict[str, str | int | bool]:
    """Simulator parameters overriding its params file: the arguments given a non-empty value, typed;
    ``publish_clock`` follows ``use_sim_time`` and ``robot_profile`` is the policy's, when they are set."""
    values = {name: values.get(name, "").strip()
              for name in ("task", "seed", "auto_reset", "use_sim_time", "robot_profile")}
    overrides: dict[str, str | int | bool] = {}
    for name in ("task", "robot_profile"):  # robot_profile: the simulated robot is the one the policy expects
        if values[name]:
            overrides[name] = values[name]
    if values["seed"]:
        if not values["seed"].isdigit():
            raise ValueError(f"launch argument seed:={values['seed']!r} is invalid: use an integer >= 0")
        overrides["seed"] = int(values["seed"])
    if values["auto_reset"]:
        overrides["auto_reset"] = policy_launch.parse_bool("auto_reset", values["auto_reset"])
    if values["use_sim_time"]:
        overrides["publish_clock"] = policy_launch.parse_bool("use_sim_time", values["use_sim_time"])
    return overrides


def launch_setup(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    params_file = values["sim_params_file"]
    if not os.path.isfile(params_file):
        raise FileNotFoundError(f"launch argument sim_params_file:={params_file!r} is not a file")
    start_policy = policy_launch.parse_bool("policy", values["policy"])
    simulator = Node(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        namespace=values["namespace"],
        parameters=[params_file, sim_overrides(values)],
        output="screen",
        emulate_tty=True,
    )
    return [simulator, *(policy_launch.launch_setup(context) if start_policy else [])]


def generate_launch_description() -> LaunchDescription:
    default_sim_params = os.path.join(get_package_share_directory(PACKAGE), "config", "sim.yaml")
    # The policy's declarations as policy.launch.py makes them (its params_file default included).
    policy_declared = [e for e in policy_launch.generate_launch_description().entities
                       if isinstance(e, DeclareLaunchArgument)]
    declared = [
        DeclareLaunchArgument(name, default_value=default_sim_params if default is None else default,
                              description=description)
        for name, (default, description) in ARGUMENTS.items() if name not in policy_launch.ARGUMENTS
    ]
    return LaunchDescription([*policy_declared, *declared, OpaqueFunction(function=launch_setup)])
