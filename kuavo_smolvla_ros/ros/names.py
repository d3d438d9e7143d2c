"""Every topic and service name the nodes use, as relative ROS names.

A relative name resolves under the node's namespace: in the root namespace ``kuavo_smolvla/action`` is
``/kuavo_smolvla/action`` (what it always was), under ``namespace:=robot1`` it is
``/robot1/kuavo_smolvla/action``, and ``-r kuavo_smolvla/action:=/elsewhere`` remaps it as usual.

The robot's topics come from the robot profile (config/robots/*.yaml), which writes them absolute, as the
robot and its bags name them (``/sensors_data_raw``); the converter and the recorder use them so. The nodes
use them through :func:`relative`: the leading ``/`` is dropped, so a namespace moves the robot's topics with
the node's own (one robot per namespace: ``/robot1/sensors_data_raw``), and in the root namespace they are the
robot's names unchanged. To keep one of them global under a namespace, remap it
(``-r sensors_data_raw:=/sensors_data_raw``).

The one exception is ``/clock``: rclpy's time source subscribes to the absolute ``/clock`` (for
``use_sim_time``), so the simulator publishes it there.
"""

from __future__ import annotations

#: The policy node's own outputs.
ACTION = "kuavo_smolvla/action"
ACTION_CHUNK = "kuavo_smolvla/action_chunk"
STATUS = "kuavo_smolvla/status"
DIAGNOSTICS = "diagnostics"
#: The policy node's enable service, private (``<namespace>/<node name>/enable``).
ENABLE = "~/enable"
#: The simulator's.
SIM_SUCCESS = "simulator/success"
SIM_EPISODE = "simulator/episode"
SIM_RESET = "simulator/reset"
#: Absolute on purpose: rclpy's TimeSource listens on /clock.
CLOCK = "/clock"


def relative(topic: str) -> str:
    """A robot profile's topic as a relative name (``/sensors_data_raw`` -> ``sensors_data_raw``)."""
    return topic.lstrip("/")


def enable_service(node_name: str) -> str:
    """The policy node's enable service seen from another node in the same namespace."""
    return f"{node_name}/enable"
