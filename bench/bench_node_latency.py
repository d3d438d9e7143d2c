"""policy_node latency: the node's own overhead for three 640x480 cameras (raw and JPEG), and the
full-size SmolVLA architecture on this machine (inference latency, ticks held at 10 Hz).

Node overhead = transport (receive time - header stamp, largest over the inputs of a chunk) + frame
decoding, per chunk: what the node adds before the model starts. Read from /kuavo_smolvla/status.

Usage: python bench/bench_node_latency.py [--seconds 30] [--full-seconds 90] [--skip-full]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_runtime import checkpoint_for
from common import RESULTS, machine, save
from ros_bench import FeederSession, policy_node_command, start_process, stop_process

STARTUP_S = 180.0


def run_node(checkpoint: Path, camera_type: str, seconds: float, log: Path, **params) -> dict:
    with FeederSession(camera_type) as feeder:
        process = start_process(policy_node_command(checkpoint, camera_type, 10.0, **params), log)
        try:
            feeder.wait_actions(1, STARTUP_S)
            end = time.monotonic() + seconds
            while time.monotonic() < end and process.poll() is None:
                time.sleep(0.5)  # a benchmark's fixed measuring window, not synchronisation
            status = feeder.status
        finally:
            stop_process(process)
    ms = 1e3
    return {
        "cameras": f"3 x 640x480 {'rgb8' if camera_type == 'raw' else 'JPEG'}",
        "chunks": int(status.inferences),
        "node_overhead_p50_ms": status.node_overhead.p50 * ms, "node_overhead_p95_ms": status.node_overhead.p95 * ms,
        "inference_p50_ms": status.inference_latency.p50 * ms, "inference_p95_ms": status.inference_latency.p95 * ms,
        "sensor_to_action_p50_ms": status.sensor_to_action_latency.p50 * ms,
        "sensor_to_action_p95_ms": status.sensor_to_action_latency.p95 * ms,
        "sensor_to_action_p99_ms": status.sensor_to_action_latency.p99 * ms,
        "control_jitter_p99_ms": status.control_jitter.p99 * ms,
        "published": int(status.actions_published), "held": int(status.actions_held),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--full-seconds", type=float, default=90.0)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    rows = []
    tiny = checkpoint_for("tiny")
    for camera_type in ("raw", "compressed"):
        row = {"model": "tiny"} | run_node(tiny, camera_type, args.seconds, RESULTS / f"latency_{camera_type}.log")
        rows.append(row)
        print(f"tiny, {row['cameras']:22s} node overhead p50 {row['node_overhead_p50_ms']:6.2f} ms "
              f"p95 {row['node_overhead_p95_ms']:6.2f} ms | inference p50 {row['inference_p50_ms']:6.1f} ms | "
              f"sensor-to-action p50/p95/p99 {row['sensor_to_action_p50_ms']:.0f}/{row['sensor_to_action_p95_ms']:.0f}/"
              f"{row['sensor_to_action_p99_ms']:.0f} ms ({row['chunks']} chunks)", flush=True)
    if not args.skip_full:
        full = checkpoint_for("full")
        row = {"model": "full"} | run_node(full, "compressed", args.full_seconds, RESULTS / "latency_full.log",
                                           torch_threads=2, warmup_iterations=1)
        rows.append(row)
        print(f"full, {row['cameras']:22s} inference p50 {row['inference_p50_ms']:7.0f} ms p95 "
              f"{row['inference_p95_ms']:7.0f} ms | held {row['held']} of {row['published']} ticks at 10 Hz "
              f"({row['chunks']} chunks)", flush=True)
    path = save("node_latency", {"machine": machine(), "rows": rows})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
