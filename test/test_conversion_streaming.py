"""The converter streams: rows leave the aligner while the bag is still being read, what it holds does not grow
with the bag (JPEG and raw cameras), and a clock segment found unusable after it handed rows on is converted
again without them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.data import align
from kuavo_smolvla_ros.data.align import Row, build_episodes
from kuavo_smolvla_ros.data.config import load_config
from kuavo_smolvla_ros.data.convert import convert
from kuavo_smolvla_ros.data.synthetic import SyntheticBag, write_synthetic_bag
from kuavo_smolvla_ros.features import OBS_STATE
from kuavo_smolvla_ros.sync import StreamBuffer


class HeldSpy:
    """Wraps the real ``StreamBuffer.add``: per stream the most samples one buffer held, and the messages filed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.peak: dict[str, int] = {}
        self.filed = 0
        original = StreamBuffer.add

        def add(buffer: StreamBuffer, value, header_stamp, received):
            sample = original(buffer, value, header_stamp, received)
            self.filed += 1
            self.peak[buffer.name] = max(self.peak.get(buffer.name, 0), len(buffer))
            return sample

        monkeypatch.setattr(StreamBuffer, "add", add)


class CountingSink:
    """A row sink that keeps no frames: per row, how many messages had been filed when it arrived."""

    def __init__(self, spy: HeldSpy):
        self.spy = spy
        self.filed_at: list[int] = []
        self.pieces: list[tuple[int, bool]] = []
        self.rows = 0

    def begin(self) -> None:
        self.rows = 0

    def add(self, row: Row) -> None:
        assert row.state.shape == (16,) and row.action.shape == (16,) and row.state.dtype == np.float32
        self.filed_at.append(self.spy.filed)
        self.rows += 1

    def end(self, keep: bool) -> None:
        self.pieces.append((self.rows, keep))

    def discard(self) -> None:
        self.pieces.clear()


def _bag(tmp_path, seconds: float, raw: bool):
    cameras = load_profile("kuavo4pro").camera_names
    spec = SyntheticBag(seconds=seconds, jitter_s=0.004, raw_encodings={c: "rgb8" for c in cameras} if raw else {})
    path = tmp_path / f"{seconds:.0f}s_{'raw' if raw else 'jpeg'}.bag"
    write_synthetic_bag(path, "ros1", spec)
    return path


@pytest.mark.parametrize("raw", [False, True], ids=["jpeg", "raw"])
def test_held_samples_do_not_grow_with_the_bag(tmp_path, monkeypatch, raw):
    config = load_config()
    held, rows = {}, {}
    for seconds in (4.0, 16.0):
        spy = HeldSpy(monkeypatch)
        sink = CountingSink(spy)
        built = align.align_bag(_bag(tmp_path, seconds, raw), config, sink)
        held[seconds], rows[seconds] = spy.peak, sink
        assert sink.pieces == [(len(built.episodes[0]), True)]
        assert not built.episodes[0].frames  # the frames went to the sink, the episode keeps none
        # rows leave as the bag is read: half of them before 70% of its messages were filed
        assert sink.filed_at[len(sink.filed_at) // 2] < 0.7 * spy.filed
    assert len(rows[16.0].filed_at) > 3.5 * len(rows[4.0].filed_at)
    for name, peak in held[16.0].items():  # a few samples per stream, the same for a bag four times as long
        assert peak <= held[4.0][name] + 1, (name, held)
    cameras = load_profile("kuavo4pro").camera_names
    assert max(held[16.0][c] for c in cameras) <= 8  # 30 Hz cameras: about a frame period of the 10 fps grid
    assert held[16.0]["state"] <= 40  # 100 Hz joint states


def test_rows_are_those_of_the_whole_bag_in_memory(tmp_path, monkeypatch):
    """The streamed rows are build_episodes' (which keeps the frames): same times, states, actions, frames."""
    path = _bag(tmp_path, 6.0, raw=False)
    config = load_config()
    kept: list[Row] = []

    class Keep(CountingSink):
        def add(self, row: Row) -> None:
            kept.append(row)

    built = align.align_bag(path, config, Keep(HeldSpy(monkeypatch)))
    whole = build_episodes(path, config).episodes[0]
    np.testing.assert_array_equal([row.time for row in kept], whole.times)
    np.testing.assert_array_equal(np.stack([row.state for row in kept]), whole.state)
    np.testing.assert_array_equal(np.stack([row.action for row in kept]), built.episodes[0].action)
    for camera, frames in whole.frames.items():
        for row, frame in zip(kept, frames, strict=True):
            np.testing.assert_array_equal(row.frames[camera].decode(), frame.decode())


def test_a_segment_found_unusable_after_its_rows_left_is_converted_again_without_them(tmp_path, monkeypatch):
    """A clock segment cut at a gap hands its first piece on, then loses too many ticks: the bag is aligned
    again without that segment's rows, and the dataset is what build_episodes keeps."""
    cameras = load_profile("kuavo4pro").camera_names
    path = tmp_path / "replan.bag"
    write_synthetic_bag(path, "ros1", SyntheticBag(
        seconds=12, clock_jumps={6.0: -5.0},
        camera_gaps={cameras[-1]: (1.0, 1.6), cameras[0]: (3.0, 3.55), cameras[1]: (4.0, 4.4)}))
    config = load_config()
    config.min_frames, config.max_dropped_fraction = 5, 0.15
    passes: list[str] = []
    original = align.align_bag

    def counted(*args, **kwargs):
        try:
            result = original(*args, **kwargs)
        except align.Replan as replan:
            passes.append(f"replan {sorted(replan.skip)}")
            raise
        passes.append("done")
        return result

    monkeypatch.setattr(align, "align_bag", counted)
    expected = build_episodes(path, config)
    assert passes == ["replan [0]", "done"]
    assert [len(e) for e in expected.episodes] == [54] and expected.discarded[0].startswith("clock segment 1 of 2")
    result = convert([path], tmp_path / "out", task="moving_grasp", config=config, progress=False)
    assert [r.status for r in result.results] == ["converted"]
    assert result.results[0].discarded == expected.discarded
    data = pd.concat(pd.read_parquet(p) for p in sorted((tmp_path / "out" / "data").rglob("*.parquet")))
    assert data["episode_index"].unique().tolist() == [0]
    np.testing.assert_array_equal(np.stack(data[OBS_STATE].to_numpy()), expected.episodes[0].state)
