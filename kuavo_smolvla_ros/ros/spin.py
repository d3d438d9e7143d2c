"""Run one node until Ctrl-C or shutdown, the same way for every executable of the package."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def spin_node(make_node: Callable[[], Node], startup_errors: tuple[type[Exception], ...] = ()) -> int:
    """Initialise rclpy, build the node and spin it; a startup error in ``startup_errors`` is logged
    as fatal and gives exit code 2 (a clear message instead of a traceback); Ctrl-C before the node is built
    gives 130, after it 0."""
    rclpy.init()
    try:
        node = make_node()
    except startup_errors as err:
        rclpy.logging.get_logger("kuavo_smolvla_ros").fatal(f"cannot start: {err}")
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:  # Ctrl-C while loading: stop quietly
        rclpy.try_shutdown()
        return 130
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # Ctrl-C shuts the context down from rclpy's signal handler: a spin in progress then fails with
        # "context is not valid" (RCLError). That is the requested stop; anything else is a real failure.
        if node.context.ok():
            raise
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
