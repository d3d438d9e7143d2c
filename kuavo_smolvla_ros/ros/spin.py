"""Run one node until Ctrl-C or shutdown, the same way for every executable of the package."""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from kuavo_smolvla_ros import interrupts


def params_files_unreadable(argv: list[str]) -> str | None:
    """What is wrong with the first ``--params-file`` of ``argv``'s ROS arguments that cannot be read or is
    no ROS 2 parameters file (:func:`~kuavo_smolvla_ros.ros.param_table.params_file_problem`), or None."""
    from kuavo_smolvla_ros.ros.param_table import params_file_problem

    for flag, value in itertools.pairwise(argv):
        if flag == "--params-file":
            path = Path(value)
            if not path.is_file():
                return f"--params-file {value}: {'a folder, not a file' if path.is_dir() else 'no such file'}"
            try:
                problem = params_file_problem(path.read_text())
            except (OSError, UnicodeDecodeError) as err:
                return f"--params-file {value}: {getattr(err, 'strerror', None) or 'not a text file'}"
            if problem:
                return f"--params-file {value}: {problem}"
    return None


def spin_node(make_node: Callable[[], Node], startup_errors: tuple[type[Exception], ...] = ()) -> int:
    """Initialise rclpy, build the node and spin it; a startup error in ``startup_errors`` is logged
    as fatal and gives exit code 2 (a clear message instead of a traceback); Ctrl-C before the node is built
    gives 130, after it 0. A ``--params-file`` that cannot be read, or ROS arguments rclpy refuses, give one
    ``cannot start:`` line and 2 too."""
    interrupts.guard()  # before rclpy.init(): Ctrl-C a library swallows while the node loads still gives 130
    logger = rclpy.logging.get_logger("kuavo_smolvla_ros")
    missing = params_files_unreadable(sys.argv)
    if missing:
        logger.fatal(f"cannot start: {missing}")
        return 2
    try:
        rclpy.init()
    except Exception as err:  # rclpy's RCLError: e.g. a malformed --ros-args
        logger.fatal(f"cannot start: the ROS arguments are refused ({str(err).splitlines()[0]})")
        return 2
    try:
        node = make_node()
        interrupts.raise_if_received()  # (swallowed by a library while the node was built)
    except startup_errors as err:
        logger.fatal(f"cannot start: {err}")
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:  # Ctrl-C while loading: stop quietly
        rclpy.try_shutdown()
        return 130
    except Exception:
        # Ctrl-C that a library swallowed while the node was built: rclpy's handler shut the context down, so
        # the construction went on to fail (RCLError "context is not valid"). That is the requested stop.
        if interrupts.received() and not rclpy.ok():
            rclpy.try_shutdown()
            return 130
        raise
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


@contextmanager
def spinning_in_background(context: rclpy.Context, *nodes: Node, period_s: float = 0.05,
                           join_timeout_s: float = 30.0) -> Iterator[tuple[Node, ...]]:
    """Spin each of ``nodes`` on its own single-threaded executor in its own daemon thread (as in separate
    processes, minus the GIL) while the ``with`` block runs; on exit each loop stops and its thread is joined
    *before* its executor is shut down. The caller still destroys the nodes and shuts ``context`` down.

    Why not ``threading.Thread(target=executor.spin)`` and ``executor.shutdown()`` from outside: rclpy's
    ``Executor.shutdown`` (Kilted) destroys the executor's guard condition without waiting for the spin thread,
    which may be about to trigger it: that thread then dies with ``InvalidHandle: cannot use Destroyable because
    destruction was requested``. Here a loop of ``spin_once(timeout_sec=period_s)`` checks a stop flag, so no
    executor is shut down while its thread is in it.

    An exception raised by a node's callback ends that node's loop (as it ends ``executor.spin()``) and is
    raised again on exit, as :class:`RuntimeError` naming the thread, unless the ``with`` block is raising
    already; a shutdown of ``context`` under the loops is a stop, not an error.

    :param period_s: longest wait of one ``spin_once`` (seconds): the stop takes at most this plus the
        callback in progress.
    :param join_timeout_s: how long to wait for each thread whose callback does not return (seconds); such a
        thread is reported with :class:`RuntimeError` after the others are stopped (unless the ``with`` block
        is raising), and its executor is left alone rather than shut down under it (the caller should then
        not destroy its node either).
    """
    stop = threading.Event()
    failures: dict[str, BaseException] = {}

    def loop(executor: SingleThreadedExecutor, name: str) -> None:
        try:
            while not stop.is_set() and context.ok():
                executor.spin_once(timeout_sec=period_s)
        except ExternalShutdownException:
            pass  # the context was shut down under the loop: the same stop
        except Exception as err:
            if context.ok():  # else rclpy's "context is not valid" from a shutdown under the loop: a stop too
                failures[name] = err

    spinners: list[tuple[SingleThreadedExecutor, threading.Thread]] = []
    raising = False
    try:
        for node in nodes:
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            name = f"spin {node.get_name()}"
            thread = threading.Thread(target=loop, args=(executor, name), name=name, daemon=True)
            spinners.append((executor, thread))
            thread.start()
        yield nodes
    except BaseException:
        raising = True
        raise
    finally:
        stop.set()
        stuck = []
        for executor, thread in spinners:
            if thread.ident is not None:  # started
                thread.join(join_timeout_s)
            if thread.is_alive():
                stuck.append(thread.name)
            else:
                executor.shutdown()
        if not raising:
            if stuck:
                raise RuntimeError(f"{', '.join(stuck)}: a callback did not return within {join_timeout_s:g} s")
            if failures:
                name, err = next(iter(failures.items()))
                raise RuntimeError(f"{name}: a callback raised {type(err).__name__}: {err}") from err
