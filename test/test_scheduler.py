"""Chunk scheduling: n actions per chunk, refill ahead, skip executed actions, blend seams, hold."""

import numpy as np
import pytest

from kuavo_smolvla_ros.control.scheduler import Chunk, ChunkScheduler


def chunk(request, base, length=50):
    """Action i is base + request + i, so the progress an action was meant for is visible."""
    return Chunk((base + np.arange(request, request + length, dtype=float))[:, None], request, "task")


def run(scheduler, ticks):
    """Values sent over ``ticks`` ticks (None where the caller would hold)."""
    values = []
    for _ in range(ticks):
        action, _ = scheduler.next_action()
        values.append(None if action is None else float(action[0]))
    return values


def test_first_chunk_runs_n_actions_from_index_0_then_holds():
    scheduler = ChunkScheduler(n_action_steps=8, blend_steps=0)
    takeover = scheduler.accept(chunk(0, 100))
    assert takeover.start_index == 0
    assert run(scheduler, 9) == [100 + i for i in range(8)] + [None]
    assert scheduler.progress == 8  # holding does not advance progress


def test_next_chunk_takes_over_at_the_window_end_skipping_what_was_executed():
    scheduler = ChunkScheduler(n_action_steps=8, blend_steps=0)
    scheduler.accept(chunk(0, 100))
    run(scheduler, 3)
    assert not scheduler.request_due(latency_s=0.25, period_s=0.1)  # 8 - 3 > 3 + 1 margin
    run(scheduler, 1)
    assert scheduler.request_due(latency_s=0.25, period_s=0.1)
    requested = scheduler.progress  # 4
    run(scheduler, 2)
    assert scheduler.accept(chunk(requested, 200)) is None  # waits for the window end
    assert scheduler.queue_depth() == 2 + 8
    assert run(scheduler, 10) == [106, 107, *[200 + i for i in range(8, 16)]]
    assert scheduler.planned_start_index(scheduler.current) == 4


def test_a_slow_chunk_starts_where_the_robot_stopped():
    scheduler = ChunkScheduler(n_action_steps=4, blend_steps=0)
    scheduler.accept(chunk(0, 0, length=10))
    run(scheduler, 2)
    requested = scheduler.progress  # 2
    assert run(scheduler, 30) == [2.0, 3.0] + [None] * 28  # ran out, held for 28 ticks
    # Only 2 actions were executed since the request: the chunk starts at index 2, not 30.
    takeover = scheduler.accept(chunk(requested, 50, length=10))
    assert takeover.start_index == 2 and run(scheduler, 1) == [54.0]


def test_a_chunk_with_nothing_left_is_discarded():
    scheduler = ChunkScheduler(n_action_steps=20, blend_steps=0)
    scheduler.accept(chunk(0, 0, length=30))
    run(scheduler, 12)
    assert scheduler.accept(chunk(0, 0, length=5), immediate=True) is None
    assert scheduler.discarded == 1 and run(scheduler, 1) == [12.0]


def test_seam_blend_moves_linearly_from_old_to_new():
    scheduler = ChunkScheduler(n_action_steps=4, blend_steps=3)
    scheduler.accept(chunk(0, 0))
    run(scheduler, 2)
    scheduler.accept(chunk(2, 100))
    assert run(scheduler, 2) == [2.0, 3.0]
    expected = [0.25 * 104 + 0.75 * 4, 0.5 * 105 + 0.5 * 5, 0.75 * 106 + 0.25 * 6, 107]
    np.testing.assert_allclose(run(scheduler, 4), expected)
    assert run(scheduler, 1) == [None]


def test_immediate_takeover_for_a_task_switch_and_clear():
    scheduler = ChunkScheduler(n_action_steps=8, blend_steps=0)
    scheduler.accept(chunk(0, 0))
    run(scheduler, 2)
    takeover = scheduler.accept(chunk(1, 500), immediate=True)
    assert takeover.start_index == 1 and run(scheduler, 1) == [502.0]
    scheduler.clear()
    assert scheduler.next_action() == (None, None) and scheduler.request_due(0.1, 0.1)
    assert scheduler.queue_depth() == 0


def test_invalid_configuration():
    with pytest.raises(ValueError, match="n_action_steps must be >= 1"):
        ChunkScheduler(0)
