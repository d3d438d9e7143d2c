"""Control-loop steadiness while inference runs: policy_node versus the lerobot-style blocking loop.

Both run as their own processes on the same ``small`` checkpoint (~0.23 s per chunk on one core,
comparable to the control periods), fed three 640x480 JPEG cameras at 30 Hz and /joint_states at
100 Hz from this process. The period between consecutive /kuavo_smolvla/action messages is measured
at the subscriber: jitter |period - 1/rate| p50/p99 and stalled ticks (period > 1.5/rate) per 1000.

Usage: python bench/bench_control_loop.py [--ticks 1000] [--rates 10 30]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE, RESULTS, machine, save
from ros_bench import FeederSession, period_stats, policy_node_command, start_process, stop_process

from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint

STARTUP_S = 120.0


def small_checkpoint() -> Path:
    path = CACHE / "small_480x640"
    if not (path / "model.safetensors").is_file():
        print(f"building the small checkpoint in {path} (once) ...", flush=True)
        build_checkpoint(path, TinyCheckpointSpec(size="small", image_shape=(480, 640)))
    return path


def measure(command: list[str], rate_hz: float, ticks: int, log: Path) -> dict:
    with FeederSession("compressed") as feeder:
        process = start_process(command, log)
        try:
            first = len(feeder.wait_actions(5, STARTUP_S))  # started and past its first chunk
            times = feeder.wait_actions(first + ticks + 1, ticks / rate_hz * 3 + 60)[first:first + ticks + 1]
            status = feeder.status
        finally:
            stop_process(process)
    stats = period_stats(times, rate_hz)
    if status is not None and "policy_node" in " ".join(command):
        stats |= {"held": int(status.actions_held), "published": int(status.actions_published),
                  "inference_p50_ms": status.inference_latency.p50 * 1e3,
                  "node_timer_jitter_p99_ms": status.control_jitter.p99 * 1e3}
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=1000)
    parser.add_argument("--rates", type=float, nargs="+", default=[10.0, 30.0])
    args = parser.parse_args()
    checkpoint = small_checkpoint()
    print(f"machine: {machine()}")
    rows = []
    for rate in args.rates:
        runs = {
            "policy_node": policy_node_command(checkpoint, "compressed", rate),
            "blocking": [sys.executable, str(Path(__file__).parent / "blocking_loop.py"), str(checkpoint), str(rate),
                         "compressed"],
        }
        for name, command in runs.items():
            stats = measure(command, rate, args.ticks, RESULTS / f"control_loop_{name}_{rate:g}hz.log")
            row = {"loop": name, "rate_hz": rate} | stats
            rows.append(row)
            extra = (f"  held {row['held']}/{row['published']}  (node's own timer jitter p99 "
                     f"{row['node_timer_jitter_p99_ms']:.2f} ms)") if "held" in row else ""
            print(f"{rate:4.0f} Hz {name:12s} jitter p50 {row['jitter_p50_ms']:6.2f} ms"
                  f"  p99 {row['jitter_p99_ms']:7.2f} ms  max period {row['max_period_ms']:7.1f} ms"
                  f"  stalls {row['stalls_per_1000']:6.1f}/1000 ticks{extra}", flush=True)
    path = save("control_loop", {"machine": machine(), "checkpoint": "small (14 M parameters)", "rows": rows})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
