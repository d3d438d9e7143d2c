"""One executor: the real policy node over DDS, stepped on /clock, sends the same commands as the simulated-time
loop of closed-loop evaluation (``control/execution.make_controller`` with ``SteppedWorker``) for the same
checkpoint, observations, noise seed and model latency in ticks."""

from __future__ import annotations

import contextlib
import functools
import time

import numpy as np
from builtin_interfaces.msg import Time
from kuavo_smolvla_ros.msg import EndEffectorData, LejuClawState
from rclpy.lifecycle import TransitionCallbackReturn
from ros_harness import patient, running
from rosgraph_msgs.msg import Clock

from kuavo_smolvla_ros.contract.streams import StreamDecoder
from kuavo_smolvla_ros.control.execution import make_controller
from kuavo_smolvla_ros.control.images import FrameFitter
from kuavo_smolvla_ros.control.worker import SteppedWorker
from kuavo_smolvla_ros.tasks import default_catalog

START = 1000.0
PERIOD = 0.1  # the node's default control rate, 10 Hz
TICKS = 40
LATENCY_TICKS = 2
SEED = 7


def _clock(seconds: float) -> Clock:
    nanoseconds = round(seconds * 1e9)
    return Clock(clock=Time(sec=nanoseconds // 10**9, nanosec=nanoseconds % 10**9))


def node_seconds(seconds: float) -> float:
    """``seconds`` as the node reads it off its clock (integer nanoseconds * 1e-9)."""
    return round(seconds * 1e9) * 1e-9


def simulated_time_commands(node, fake, instruction: str) -> list[np.ndarray]:
    """What closed-loop evaluation's loop sends for the fake robot's (constant) observations: the node's execution
    settings, a stepped worker of ``LATENCY_TICKS``, ``runtime.predict_chunk`` with the node's seed; the frames and
    the state decoded from the very messages the fake robot publishes."""
    runtime, profile = node.runtime, node.profile
    execution = node.execution_settings()
    decoder = StreamDecoder(profile, {c: None for c in profile.camera_names})
    fitter = FrameFitter({c: tuple(runtime.info.image_shapes[c][1:]) for c in runtime.cameras}, warn=print)
    claw = LejuClawState(state=[2, 2], data=EndEffectorData(
        name=list(profile.end_effector.names), position=[fake.state[7] * 100, fake.state[15] * 100]))
    decoder.update_grippers(claw)
    state = decoder.state(fake.sensors_message(fake.state))
    frames = {name: fitter.fit(name, decoder.image(name, fake.camera_message(name))) for name in runtime.cameras}
    controller = make_controller(
        execution, runtime.cameras, lambda observation, **guidance: runtime.predict_chunk(observation, seed=SEED,
                                                                                           **guidance),
        default_catalog(), worker=functools.partial(SteppedWorker, latency_ticks=LATENCY_TICKS,
                                                    period_s=execution.period_s),
        stream_max_age_s={c.name: c.sync.live_max_age for c in profile.cameras} | {
            "state": profile.state.sync.live_max_age},
        stale_behaviour=node.settings.stale_behaviour, error_retry_s=node.settings.error_retry_s,
        initial_latency_s=(LATENCY_TICKS - 0.5) * execution.period_s, stamp_source=profile.stamp_source)
    commands = []
    try:
        controller.set_instruction(instruction, node_seconds(START))
        for tick in range(1, TICKS + 1):
            now = node_seconds(START + tick * PERIOD)
            controller.add_state(state, None, now)
            for name, frame in frames.items():
                controller.add_image(name, frame, None, now)
            out = controller.tick(now)
            if out.command is not None:
                commands.append(np.asarray(out.command, dtype=np.float64))
    finally:
        controller.close()
    return commands


def test_the_node_over_ros_sends_what_simulated_time_evaluation_sends(tiny_checkpoint):
    publisher = {}

    def make_clock(fake):
        publisher["clock"] = fake.create_publisher(Clock, "/clock", 10)

    task = default_catalog().get("task2")
    with running(tiny_checkpoint, default_instruction=task.name, use_sim_time=True, seed=SEED, autostart=False,
                 inference_latency_ticks=LATENCY_TICKS, warmup_iterations=0, before_node=make_clock) as (node, fake):
        clock = publisher["clock"]
        # configured (inputs flowing, no commands), and activated only once the inputs are fresh at START: no
        # chunk is requested before the first stepped tick, whatever the order DDS delivers things in
        deadline = time.monotonic() + patient(30)
        while node.get_clock().now().nanoseconds < round(START * 1e9):
            assert time.monotonic() < deadline, "the node never took the simulated clock's start time"
            clock.publish(_clock(START))  # again every second until it arrives
            with contextlib.suppress(AssertionError):
                fake.wait_for(lambda: node.get_clock().now().nanoseconds >= round(START * 1e9), 1.0,
                              "the simulated clock", prompt=True)
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        # the simulated clock at START, and the node's buffers full of fresh inputs at that time
        def ready() -> bool:
            start = node_seconds(START)
            return (node.controller is not None and node.get_clock().now().nanoseconds * 1e-9 == start
                    and all(b.as_of(start, 0.0) is not None for b in node.controller.buffers.values()))

        deadline = time.monotonic() + patient(60)
        while True:
            clock.publish(_clock(START))
            try:
                fake.wait_for(ready, 0.2, "fresh inputs at the start time", prompt=True)
                break
            except AssertionError:
                assert time.monotonic() < deadline, (
                    "the node never had fresh inputs at the start time: node clock "
                    f"{node.get_clock().now().nanoseconds * 1e-9}, buffers "
                    f"{ {n: (b._stamps[-1:] if b._stamps else None) for n, b in node.controller.buffers.items()} }")
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        first = fake.count("action")
        for tick in range(1, TICKS + 1):
            clock.publish(_clock(START + tick * PERIOD))
            # one control tick per period: wait until the node has handled it (its command, or a held tick)
            now = node_seconds(START + tick * PERIOD)
            fake.wait_for(lambda t=now: node.controller._now >= t, 20, f"control tick {tick}")
            # lock-step inputs: every stream has a message that arrived at this time before the clock moves on,
            # so no tick ever finds a stream stale (the fake robot publishes on wall-clock timers)
            fake.wait_for(lambda t=now: all((b.as_of(t) is not None and b.as_of(t).stamp == t)
                                            for b in node.controller.buffers.values()), 20, f"inputs at tick {tick}")

        def stamp(message) -> float:
            return round(message.header.stamp.sec + message.header.stamp.nanosec * 1e-9, 6)

        end = round(START + TICKS * PERIOD, 6)
        fake.wait_for(lambda: any(stamp(m) == end for m in fake.received["action"][first:]), 10, "the last command")
        over_ros = {stamp(m): np.array(m.position) for m in fake.received["action"][first:]}
        expected = simulated_time_commands(node, fake, task.instruction)
    sent = [over_ros[key] for key in sorted(over_ros) if key <= START + TICKS * PERIOD + 1e-6]
    assert len(expected) >= TICKS - 2 * LATENCY_TICKS, len(expected)  # a command every tick once a chunk is in
    assert len(sent) == len(expected), (len(sent), len(expected))
    differences = [float(np.max(np.abs(a - b))) for a, b in zip(sent, expected, strict=True)]
    bad = [i for i, d in enumerate(differences) if d >= 1e-5]
    assert not bad, (bad, [differences[i] for i in bad], sorted(over_ros)[:5], len(over_ros))
    # and the commands move (the chunks took over and the ramp ran), so equality is not trivial
    assert float(np.max(np.abs(expected[-1] - expected[0]))) > 1e-3
