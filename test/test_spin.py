"""``spinning_in_background``: nodes spin in their own threads, and stopping joins each thread before its
executor is shut down (rclpy's own ``Executor.shutdown`` from another thread can destroy the guard condition
the spinning thread is about to trigger: ``InvalidHandle`` in that thread, seen once in CI)."""

from __future__ import annotations

import threading

import pytest
import rclpy
from rclpy.node import Node
from std_msgs.msg import String

from kuavo_smolvla_ros.ros.spin import spinning_in_background

pytestmark = pytest.mark.ros


@pytest.fixture()
def thread_errors():
    """Exceptions raised in any thread while the test runs."""
    errors: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    yield errors
    threading.excepthook = previous


@pytest.fixture()
def make_node():
    """``make_node(name)``: a node in a context of its own; all destroyed and the context shut down after."""
    context = rclpy.Context()
    rclpy.init(context=context)
    made: list[Node] = []

    def make(name: str) -> Node:
        made.append(Node(name, context=context))
        return made[-1]

    yield make
    for node in made:
        node.destroy_node()
    rclpy.shutdown(context=context)


def busy_pair(context) -> tuple[Node, Node, threading.Event, list[int]]:
    """A talker publishing every millisecond and a listener counting what arrives (both in ``context``)."""
    talker, listener = Node("talker", context=context), Node("listener", context=context)
    publisher = talker.create_publisher(String, "chatter", 10)
    talker.create_timer(0.001, lambda: publisher.publish(String(data="x" * 64)))
    heard, count = threading.Event(), [0]

    def on_message(_msg: String) -> None:
        count[0] += 1
        if count[0] >= 20:
            heard.set()

    listener.create_subscription(String, "chatter", on_message, 10)
    return talker, listener, heard, count


def join_spinner(name: str) -> None:
    """Wait (bounded) until the spinning thread called ``name`` has ended."""
    for thread in threading.enumerate():
        if thread.name == name:
            thread.join(20)
            assert not thread.is_alive(), f"{name} still runs"


def test_nodes_spin_until_the_block_ends_and_every_thread_is_joined_without_errors(thread_errors):
    for _ in range(15):
        context = rclpy.Context()
        rclpy.init(context=context)
        talker, listener, heard, count = busy_pair(context)
        before = set(threading.enumerate())
        with spinning_in_background(context, talker, listener):
            assert heard.wait(20), f"only {count[0]} messages arrived in 20 s"
            # (other threads of the test session, such as tqdm's monitor, may come and go meanwhile)
            spinners = {t for t in set(threading.enumerate()) - before if t.name.startswith("spin ")}
            assert {t.name for t in spinners} == {"spin talker", "spin listener"}
        assert not any(t.is_alive() for t in spinners)
        after_stop = count[0]
        talker.destroy_node()
        listener.destroy_node()
        rclpy.shutdown(context=context)
        assert count[0] == after_stop  # nothing ran after the block
    assert thread_errors == []


def test_a_callback_that_does_not_return_is_named_and_its_executor_left_alone(make_node, thread_errors):
    node = make_node("stuck")
    context = node.context
    release, entered = threading.Event(), threading.Event()

    def block() -> None:
        entered.set()
        release.wait(30)

    node.create_timer(0.01, block)
    try:
        raise OSError("handled")  # reported from inside a caller's handler too (sys.exc_info() shows its error)
    except OSError:
        try:
            with (pytest.raises(RuntimeError, match=r"spin stuck: a callback did not return within 0.2 s"),
                  spinning_in_background(context, node, join_timeout_s=0.2)):
                assert entered.wait(20)
        finally:
            release.set()
    join_spinner("spin stuck")  # the callback returned: the loop sees the stop
    assert thread_errors == []


def test_a_callback_that_raises_ends_its_loop_and_is_raised_on_exit(make_node, thread_errors):
    node, calls = make_node("faulty"), []

    def fail() -> None:
        calls.append(1)
        raise ValueError("bad reading")

    node.create_timer(0.01, fail)
    with (pytest.raises(RuntimeError, match=r"^spin faulty: a callback raised ValueError: bad reading$") as raised,
          spinning_in_background(node.context, node)):
        join_spinner("spin faulty")  # the loop ended with the callback's error
    assert isinstance(raised.value.__cause__, ValueError) and len(calls) == 1
    assert thread_errors == []


def test_the_blocks_own_error_is_not_replaced(make_node, thread_errors):
    node = make_node("quiet")
    with pytest.raises(KeyError, match="mine"), spinning_in_background(node.context, node):
        raise KeyError("mine")
    assert thread_errors == []
