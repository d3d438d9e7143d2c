"""Chunk scheduling: n actions per chunk, refill ahead, skip elapsed actions, blend seams."""

import numpy as np
import pytest

from kuavo_smolvla_ros.control.scheduler import Chunk, ChunkScheduler


def chunk(request_tick, base, length=50, dim=1):
    """Action for tick t is base + t (so the tick an action was meant for is visible)."""
    ticks = np.arange(request_tick, request_tick + length, dtype=float)
    return Chunk(np.repeat((base + ticks)[:, None], dim, axis=1), request_tick, "task")


def test_first_chunk_takes_over_immediately_skipping_elapsed_actions():
    scheduler = ChunkScheduler(n_action_steps=8, blend_steps=0)
    takeover = scheduler.accept(chunk(0, 100), tick=3)
    assert takeover.start_index == 3
    actions = [scheduler.action(t)[0] for t in range(3, 12)]
    assert [a[0] for a in actions[:8]] == [100 + t for t in range(3, 11)]
    assert actions[8] is None  # 8 executed, then nothing (hold)


def test_next_chunk_waits_for_the_window_end_and_starts_at_that_ticks_index():
    scheduler = ChunkScheduler(n_action_steps=8, blend_steps=0)
    scheduler.accept(chunk(0, 100), tick=0)
    assert not scheduler.request_due(3, latency_s=0.25, period_s=0.1)  # end 8 - (3 + 1) = 4
    assert scheduler.request_due(4, latency_s=0.25, period_s=0.1)
    assert scheduler.accept(chunk(4, 200), tick=6) is None  # pending until tick 8
    assert scheduler.queue_depth(6) == 2 + 8
    values = [scheduler.action(t)[0][0] for t in range(6, 16)]
    assert values == [106, 107, *[200 + t for t in range(8, 16)]]
    assert scheduler.planned_start_index(scheduler.current) == 4


def test_late_chunk_takes_over_at_once_and_counts_discards():
    scheduler = ChunkScheduler(n_action_steps=4, blend_steps=0)
    scheduler.accept(chunk(0, 0, length=10), tick=0)
    assert scheduler.action(5)[0] is None  # ran out at tick 4
    takeover = scheduler.accept(chunk(2, 50, length=10), tick=6)
    assert takeover.start_index == 4 and scheduler.action(6)[0][0] == 56
    assert scheduler.accept(chunk(0, 0, length=10), tick=10) is None
    assert scheduler.discarded == 1


def test_seam_blend_moves_linearly_from_old_to_new():
    scheduler = ChunkScheduler(n_action_steps=4, blend_steps=3)
    scheduler.accept(chunk(0, 0), tick=0)
    scheduler.accept(chunk(2, 100), tick=3)
    for t in range(4):
        scheduler.action(t)
    values = [scheduler.action(t)[0][0] for t in range(4, 8)]
    expected = [0.25 * (100 + 4) + 0.75 * 4, 0.5 * 105 + 0.5 * 5, 0.75 * 106 + 0.25 * 6, 107]
    np.testing.assert_allclose(values, expected)
    assert scheduler.action(8)[0] is None


def test_immediate_takeover_for_a_task_switch_and_clear():
    scheduler = ChunkScheduler(n_action_steps=8, blend_steps=0)
    scheduler.accept(chunk(0, 0), tick=0)
    takeover = scheduler.accept(chunk(1, 500), tick=2, immediate=True)
    assert takeover.tick == 2 and scheduler.action(2)[0][0] == 502
    scheduler.clear()
    assert scheduler.action(3) == (None, None) and scheduler.request_due(3, 0.1, 0.1)


def test_invalid_configuration():
    with pytest.raises(ValueError, match="n_action_steps must be >= 1"):
        ChunkScheduler(0)
