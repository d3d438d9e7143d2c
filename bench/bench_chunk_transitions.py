"""Chunk seams: no blend, the linear blend and lerobot's real-time chunking (RTC), side by side.

One checkpoint, the same evaluation episodes and noise for every setting, on the closed-loop executor in
simulated time (``kuavo_smolvla_ros.sim.evaluate``: the node's controller, a model latency of a whole number
of control ticks). For each transition x latency (1, 3, 6 ticks):

- seam discontinuity: the largest per-tick change of the scheduled arm actions (rad, before the safety
  filter, which caps every change at its speed limit) at the ticks where a new chunk takes over, against
  the 99th percentile of the per-tick changes inside chunks (the ratio: 1 = seams are invisible);
- closed-loop success per task and overall;
- held ticks per episode (the model behind: the last command repeated).

Usage: python bench/bench_chunk_transitions.py [--checkpoint DIR] [--episodes 5] [--latencies 1 3 6]
Default checkpoint: the closed-loop benchmark's final replay checkpoint, else the demo's final checkpoint,
else a tiny untrained one (then only the seam figures mean something). Writes
outputs/bench/chunk_transitions.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import CACHE, ROOT, machine, save

from kuavo_smolvla_ros.tasks import default_catalog

TRANSITIONS = {"no blend": {"blend_steps": 0}, "blend": {"blend_steps": 2}, "rtc": {"chunk_transition": "rtc"}}
#: The closed-loop benchmark's run (a) (its folder names the base's settings: the newest first), the demo's.
CANDIDATES = [*sorted((CACHE / "closed_loop").glob("train_a_e12*/task4_sorting/best"),
                      key=lambda p: p.stat().st_mtime, reverse=True),
              ROOT / "outputs" / "demo" / "train" / "task4_sorting" / "best"]


def pick_checkpoint(given: Path | None) -> tuple[Path, str]:
    if given is not None:
        return given, "given"
    for candidate in CANDIDATES:
        if (candidate / "model.safetensors").is_file():
            return candidate, "trained"
    from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint

    path = CACHE / "chunk_transitions" / "untrained"
    if not (path / "model.safetensors").is_file():
        build_checkpoint(path, TinyCheckpointSpec(image_shape=(64, 64), action_mode="relative", seed=0))
    return path, "untrained (random weights: success is not meaningful)"


def seam_figures(results) -> dict[str, float]:
    """The largest per-tick change of the scheduled arm actions (before the safety filter, which would cap
    both at its speed limit) at seams, the p99 inside chunks, their ratio (rad, max over the 14 arm joints)."""
    from kuavo_smolvla_ros import robot

    arms = ~np.isin(np.arange(robot.ACTION_DIM), robot.GRIPPER_INDICES)
    at_seams, inside = [], []
    for runs in results.values():
        for run in runs:
            steps = np.abs(np.diff(run.proposed[:, arms], axis=0)).max(axis=1)  # steps[i]: tick i -> i + 1
            seams = {t - 1 for t in run.seams if t - 1 >= 0}
            first = min(run.seams) if run.seams else len(steps)
            for i, step in enumerate(steps):
                if not np.isfinite(step) or i < first:
                    continue
                (at_seams if i in seams else inside).append(step)
    seam_max = float(np.max(at_seams)) if at_seams else float("nan")
    p99 = float(np.percentile(inside, 99)) if inside else float("nan")
    return {"seam_max_rad": seam_max, "inside_p99_rad": p99, "ratio": seam_max / p99 if p99 else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--episodes", type=int, default=5, help="episodes per task and setting")
    parser.add_argument("--latencies", type=int, nargs="+", default=[1, 3, 6])
    args = parser.parse_args()

    import torch

    from kuavo_smolvla_ros.control.execution import ExecutionSettings
    from kuavo_smolvla_ros.policy.runtime import PolicyRuntime
    from kuavo_smolvla_ros.sim.evaluate import evaluate, success_rates

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    checkpoint, kind = pick_checkpoint(args.checkpoint)
    runtime = PolicyRuntime.open(checkpoint)
    tasks = list(default_catalog())
    rows, started = [], time.perf_counter()
    for latency in args.latencies:
        for name, change in TRANSITIONS.items():
            execution = ExecutionSettings(n_action_steps=runtime.n_action_steps, **change)
            results = evaluate(runtime, tasks, args.episodes, progress=False, latency_ticks=latency,
                               execution=execution)
            success = success_rates(results)
            held = np.mean([r.held_ticks for runs in results.values() for r in runs])
            rows.append({"transition": name, "latency_ticks": latency, **seam_figures(results),
                         "success": success, "success_mean": float(np.mean(list(success.values()))),
                         "held_ticks_per_episode": float(held)})
            row = rows[-1]
            print(f"latency {latency} tick(s)  {name:<9} seam max {row['seam_max_rad']:.4f} rad, inside p99 "
                  f"{row['inside_p99_rad']:.4f} (x{row['ratio']:.2f}), success {100 * row['success_mean']:.0f}%, "
                  f"held {row['held_ticks_per_episode']:.1f} ticks/episode", flush=True)
    payload = {"machine": machine(), "checkpoint": str(checkpoint), "checkpoint_kind": kind,
               "episodes_per_task": args.episodes, "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    print(f"checkpoint: {checkpoint} ({kind}); wrote {save('chunk_transitions', payload)}")


if __name__ == "__main__":
    main()
