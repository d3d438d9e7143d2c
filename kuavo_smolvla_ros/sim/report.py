"""Closed-loop reports as a person reads them: per-task success, and a PNG of what the hands did."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from kuavo_smolvla_ros.atomic import write_png
from kuavo_smolvla_ros.sim import scenes
from kuavo_smolvla_ros.sim.kinematics import ARMS, hand_position

HAND_COLORS = {"left": "tab:blue", "right": "tab:red"}


def plot_closed_loop(trajectories: Mapping[str, Sequence[dict]], success: Mapping[str, Mapping[str, float]],
                     path: str | Path) -> Path:
    """One top-view panel per task with each episode's hand paths (solid: success, dotted: failure), the
    object start (o) and the targets (x); and a bar chart of success per task for each named evaluation.

    ``trajectories[task]`` holds dicts with ``states`` ((T, 16)), ``object_start`` (x, y) and ``success``.
    ``success[evaluation][task]`` is a rate in 0..1.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(trajectories)
    figure, axes = plt.subplots(1, len(tasks) + 1, figsize=(4 * (len(tasks) + 1), 4.2))
    for axis, task in zip(axes, tasks, strict=False):
        for target in scenes.all_targets():
            axis.plot(*target, "x", color="0.6", markersize=8)
        for xy in scenes.SCENES[task].targets:
            axis.plot(*xy, "x", color="black", markersize=10, markeredgewidth=2)
        for run in trajectories[task]:
            states = np.asarray(run["states"])
            style = "-" if run["success"] else ":"
            for arm in ARMS:
                hands = np.array([hand_position(s, arm) for s in states])
                axis.plot(hands[:, 0], hands[:, 1], style, color=HAND_COLORS[arm], linewidth=1, alpha=0.8)
            axis.plot(*run["object_start"], "o", color="tab:orange", markersize=5)
        done = sum(bool(r["success"]) for r in trajectories[task])
        axis.set(title=f"{task}: {done}/{len(trajectories[task])} solved", xlim=(-0.55, 0.55), ylim=(0.05, 0.85),
                 xlabel="x (m, robot's right)", ylabel="y (m, forwards)", aspect="equal")
    bars = axes[-1]
    names = list(success)
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        values = [100 * success[name].get(task, np.nan) for task in tasks]
        bars.bar(np.arange(len(tasks)) + i * width, values, width, label=name)
    bars.set_xticks(np.arange(len(tasks)) + width * (len(names) - 1) / 2, tasks, rotation=20)
    bars.set(ylim=(0, 105), ylabel="success (%)", title="success per task")
    bars.axhline(80, color="0.5", linestyle="--", linewidth=0.8)
    bars.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    write_png(figure, path, dpi=90)
    plt.close(figure)
    return path
