"""The console scripts of ``setup.py``: each imports its command's module and runs its ``main()``, so that
Ctrl-C at any moment, while the command's modules still import included, ends in one line and exit status 130
instead of a traceback (the commands handle an interrupt of their own work themselves: the bags kept, the
parts to resume from); :func:`kuavo_smolvla_ros.interrupts.guard` keeps an interrupt that a library's bare
``except:`` swallows while it imports from being lost. The nodes (``policy_node``, ``sim_robot``) too: Ctrl-C
while they import is one line and 130; once running, they stop quietly on Ctrl-C in
:func:`kuavo_smolvla_ros.ros.spin.spin_node`. (Not covered: the first ~0.07 s, while Python itself starts
and the script imports this package.)
"""

from __future__ import annotations

import importlib
import sys

from kuavo_smolvla_ros import interrupts

EXIT_INTERRUPTED = 130


def run(prog: str, module: str, stop_is_success: bool = False) -> int:
    """``module.main()``'s exit status; ``prog: interrupted`` on stderr and 130 on a KeyboardInterrupt that
    reaches here (from the import, or from a ``main`` that does not handle it); 130 too when ``main`` returns 0
    although Ctrl-C was pressed (a library swallowed it where no import was around it: a shell script calling
    the command stops as the user asked; not for a node, ``stop_is_success``, whose normal stop is Ctrl-C)."""
    try:
        interrupts.guard()
        command = importlib.import_module(module)
        interrupts.raise_if_received()  # (swallowed where no import statement was around it)
        status = command.main()
        if status == 0 and interrupts.received() and not stop_is_success:
            # swallowed at run time: the work is done, but the caller (a script) asked to stop
            print(f"{prog}: interrupted after its work was done", file=sys.stderr)
            return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return status


def tiny() -> int:
    return run("kuavo-smolvla-tiny", "kuavo_smolvla_ros.policy.tiny")


def inspect() -> int:
    return run("kuavo-smolvla-inspect", "kuavo_smolvla_ros.policy.checkpoint")


def rosbag_to_lerobot() -> int:
    return run("kuavo-rosbag-to-lerobot", "kuavo_smolvla_ros.data.cli")


def sim_record() -> int:
    return run("kuavo-sim-record", "kuavo_smolvla_ros.sim.record")


def sim_eval() -> int:
    return run("kuavo-sim-eval", "kuavo_smolvla_ros.sim.score")


def policy_node() -> int:
    return run("policy_node", "kuavo_smolvla_ros.ros.policy_node", stop_is_success=True)


def sim_robot() -> int:
    return run("sim_robot", "kuavo_smolvla_ros.ros.sim_node", stop_is_success=True)
