"""Start ``sim_robot`` and ``policy_node`` as ``sim.launch.py`` does, without ``ros2 launch``.

``launch``/``launch_ros`` are not on PyPI: this starts the two installed executables with the node names
and ``--params-file`` the launch file gives them, and yields a spinning :class:`SimOperator` to drive
them. The demo and the end-to-end test use it; on a ROS 2 installation ``ros2 launch kuavo_smolvla_ros
sim.launch.py params_file:=P sim_params_file:=S`` starts the same two nodes.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

from kuavo_smolvla_ros.resources import share_file

POLICY_NODE = ("policy_node", "kuavo_smolvla_policy", "config/policy.yaml")
SIM_NODE = ("sim_robot", "kuavo_sim", "config/sim.yaml")


def params_file(node: tuple[str, str, str], values: Mapping[str, Any], path: str | Path) -> Path:
    """A copy of the node's installed params file with ``values`` changed (as launch overrides would)."""
    _, name, source = node
    data = yaml.safe_load(share_file(source).read_text())
    data[f"/**/{name}"]["ros__parameters"].update(values)
    path = Path(path)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def launch_command(policy_params: Path, sim_params: Path, namespace: str = "") -> str:
    """The ``ros2 launch`` command that starts what :func:`bringup` starts."""
    return (f"ros2 launch kuavo_smolvla_ros sim.launch.py params_file:={policy_params} "
            f"sim_params_file:={sim_params}" + (f" namespace:={namespace}" if namespace else ""))


@contextmanager
def bringup(policy_params: Path, sim_params: Path, logs: Path, ready_timeout: float = 180.0,
            namespace: str = "") -> Iterator[Any]:
    """Both nodes running in ``namespace`` (their output in ``logs/``) and an operator ready to run episodes
    there; all stopped on exit. Raises ``OperatorError`` (with the node logs' tails) if they do not come up."""
    import rclpy

    from kuavo_smolvla_ros.ros.sim_operator import OperatorError, SimOperator
    from kuavo_smolvla_ros.ros.spin import spinning_in_background

    logs = Path(logs)
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:  # whatever fails, everything started so far is stopped, in reverse order
        for (executable, name, _), params in ((SIM_NODE, sim_params), (POLICY_NODE, policy_params)):
            log = stack.enter_context(open(logs / f"{executable}.log", "w"))
            command = [shutil.which(executable) or executable, "--ros-args", "-r", f"__node:={name}",
                       *(["-r", f"__ns:=/{namespace.strip('/')}"] if namespace else []),
                       "--params-file", str(params)]
            stack.callback(_stop, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        context = rclpy.Context()
        rclpy.init(context=context)
        stack.callback(rclpy.try_shutdown, context=context)
        operator = SimOperator(context=context, namespace=namespace)
        stack.callback(operator.destroy_node)
        stack.enter_context(spinning_in_background(context, operator))
        try:
            operator.wait_until_ready(ready_timeout)
        except OperatorError as err:
            tails = "\n".join(f"--- {p.name}:\n" + "".join(p.read_text().splitlines(True)[-15:])
                              for p in sorted(logs.glob("*.log")))
            raise OperatorError(f"{err}\n{tails}") from None
        yield operator


def _stop(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM ``process`` (a node stops on it as on Ctrl-C), SIGKILL it after ``grace_s`` seconds."""
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
