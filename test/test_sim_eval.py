"""``kuavo-sim-eval``: any checkpoint scored in the simulator through the node's executor, with intervals."""

import itertools
import json

import pytest

from kuavo_smolvla_ros.sim import scenes
from kuavo_smolvla_ros.sim.score import main, wilson_interval


def test_wilson_interval_values():
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)  # the textbook Wilson 95% interval
    assert wilson_interval(0, 40)[0] == 0.0 and wilson_interval(40, 40)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_scores_a_checkpoint_and_writes_json_and_png(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    args = [str(tiny_checkpoint), "--tasks", "sorting", "weighing", "--episodes", "2", "--latency-ticks", "2",
            "--chunk-transition", "rtc", "--output", str(out), "--quiet"]
    assert main(args) == 0
    shown = capsys.readouterr().out
    report = json.loads((out / "sim_eval.json").read_text())
    assert report["latency_ticks"] == 2 and report["n_action_steps"] == 8 and report["first_seed"] == 100_000
    assert report["chunk_transition"] == "rtc" and report["camera_jpeg_quality"] == 90
    assert "chunk transition rtc, cameras JPEG 90" in shown
    assert list(report["success"]) == ["sorting", "weighing"]
    for task, summary in report["success"].items():
        assert summary["episodes"] == 2 and 0 <= summary["ci95"][0] <= summary["success"] <= summary["ci95"][1]
        assert [e["seed"] for e in report["episodes"][task]] == [100_000, 100_001]
        assert f"  {task:<14} {summary['successes']:>3}/2  " in shown
        # how far they got: per milestone of the scene, in order, never more episodes than the one before
        names = [m["milestone"] for m in summary["milestones"]]
        assert names == list(scenes.scene_for(task).milestones)
        reached = [m["reached"] for m in summary["milestones"]]
        assert all(2 >= r >= s for r, s in itertools.pairwise(reached)) and reached[-1] >= summary["successes"]
        assert ("      reached: " + "; ".join(f"{n}: {r}/2" for n, r in zip(names, reached, strict=True))) in shown
        for episode in report["episodes"][task]:
            assert 0 <= episode["milestones_reached"] <= len(names)
            assert all(e["kind"] in ("grasp", "release") and len(e["xy"]) == 2 for e in episode["events"])
    assert "model latency 2 tick(s) at 10 Hz" in shown
    assert (out / "sim_eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same episodes and noise again: the same outcome
    assert main([*args[:-3], "--output", str(tmp_path / "again"), "--quiet"]) == 0
    again = json.loads((tmp_path / "again" / "sim_eval.json").read_text())
    assert again["episodes"] == report["episodes"]
    # the rendered pixels: said in the header and the report (0, as on the command line)
    assert main([*args[:-3], "--output", str(tmp_path / "raw"), "--quiet", "--jpeg-quality", "0"]) == 0
    assert json.loads((tmp_path / "raw" / "sim_eval.json").read_text())["camera_jpeg_quality"] == 0
    assert "cameras raw" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--tasks", "juggling"], "unknown task 'juggling'"),
    (["--episodes", "0"], "--episodes must be >= 1"),
    (["--latency-ticks", "0"], "--latency-ticks must be >= 1"),
    (["--first-seed", "-5"], "--first-seed must be >= 0"),
    (["--tasks", "sorting", "4"], "--tasks names sorting more than once"),
    (["--tasks", "sorting,4"], "--tasks names sorting more than once"),  # commas too, as kuavo-sim-record
    (["--tasks", ","], "--tasks names no task"),
    (["--chunk-transition", "smooth"], "invalid choice: 'smooth'"),
    (["--output", __file__], "exists and is not a folder"),
    (["--output", f"{__file__}/sub"], f"--output {__file__}/sub: {__file__} is a file, not a folder"),
    (["--num-steps", "0"], "--num-steps must be >= 1, got 0"),
    (["--jpeg-quality", "101"], "--jpeg-quality must be in 0..100 (0: raw), got 101"),
    (["--tasks", "all", "1"], "--tasks: 'all' stands alone, got 'all 1'"),
])
def test_bad_arguments_exit_2_with_one_line(tiny_checkpoint, args, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main([str(tiny_checkpoint), *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_refused_checkpoint_exits_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kuavo-sim-eval: error: checkpoint") and "does not exist" in err[0]


def test_two_best_folders_get_two_default_reports(tiny_checkpoint, tmp_path, monkeypatch):
    """The README scores task4_sorting/best and smolvla_reflow/best: their default folders differ."""
    import shutil

    monkeypatch.chdir(tmp_path)
    for run in ("task4_sorting", "smolvla_reflow"):
        shutil.copytree(tiny_checkpoint, tmp_path / run / "best")
        assert main([str(tmp_path / run / "best"), "--tasks", "sorting", "--episodes", "1", "--latency-ticks", "1",
                     "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "outputs" / "sim_eval").iterdir()) == [
        "smolvla_reflow_best", "task4_sorting_best"]
