"""Time to predict one chunk: our PolicyRuntime versus lerobot's own path, same weights and inputs.

lerobot's path is what its inference loops do: numpy observation -> float tensors ->
``preprocessor`` -> ``predict_action_chunk`` -> ``postprocessor``. Both paths share one loaded
policy, so the difference is the runtime's own overhead. Runs interleaved, medians and the ratio.

Usage: python bench/bench_runtime.py [--sizes tiny full] [--repeats N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from common import CACHE, interleaved, machine, median_ms, save

from kuavo_smolvla_ros import features, robot
from kuavo_smolvla_ros.features import image_key
from kuavo_smolvla_ros.policy.runtime import Observation, PolicyRuntime
from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint
from kuavo_smolvla_ros.tasks import default_catalog

IMAGE_SIDE = {"tiny": 64, "full": 512}
DEFAULT_REPEATS = {"tiny": 30, "full": 5}


def checkpoint_for(size: str) -> Path:
    """Build (once, cached under .cache/bench) a random checkpoint of ``size``."""
    side = IMAGE_SIDE[size]
    path = CACHE / f"runtime_{size}_{side}"
    if not (path / "model.safetensors").is_file():
        print(f"building the {size} checkpoint in {path} (once) ...", flush=True)
        build_checkpoint(path, TinyCheckpointSpec(size=size, image_shape=(side, side)))
    return path


def lerobot_path(runtime: PolicyRuntime, observation: Observation, noise: np.ndarray):
    """lerobot's inference path on the runtime's own policy and processors."""
    device = runtime.device

    def run():
        with torch.inference_mode():
            batch = {
                image_key(name): torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)
                for name, image in observation.images.items()
            }
            batch[features.OBS_STATE] = torch.from_numpy(observation.state)
            batch["task"] = observation.instruction
            actions = runtime.policy.predict_action_chunk(
                runtime.preprocessor(batch), noise=torch.from_numpy(noise)[None].to(device))
            return runtime.postprocessor(actions)[0].numpy()

    return run


def bench_size(size: str, repeats: int, device: str) -> dict:
    runtime = PolicyRuntime.open(checkpoint_for(size), device=device)
    params = sum(p.numel() for p in runtime.policy.parameters())
    side = IMAGE_SIDE[size]
    rng = np.random.default_rng(0)
    observation = Observation(
        {c: rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for c in runtime.cameras},
        ((robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2).astype(np.float32),
        default_catalog().get(1).instruction,
    )
    noise = runtime.make_noise(0)
    ours = runtime.predict_chunk(observation, noise=noise)
    theirs = lerobot_path(runtime, observation, noise)()
    max_diff = float(np.abs(ours - theirs).max())
    times = interleaved({
        "lerobot": lerobot_path(runtime, observation, noise),
        "runtime": lambda: runtime.predict_chunk(observation, noise=noise),
    }, repeats=repeats, warmup=2)
    lerobot_ms, runtime_ms = median_ms(times["lerobot"]), median_ms(times["runtime"])
    return {
        "size": size, "parameters": params, "cameras": len(runtime.cameras), "image": f"{side}x{side}",
        "num_steps": runtime.num_steps, "chunk_size": runtime.chunk_size, "repeats": repeats,
        "lerobot_median_ms": lerobot_ms, "runtime_median_ms": runtime_ms,
        "ratio": runtime_ms / lerobot_ms, "max_abs_difference": max_diff,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "full"], choices=sorted(IMAGE_SIDE))
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per path")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"machine: {machine()}, device {args.device}")
    rows = []
    for size in args.sizes:
        row = bench_size(size, args.repeats or DEFAULT_REPEATS[size], args.device)
        rows.append(row)
        print(f"{size:5s} {row['parameters'] / 1e6:7.1f} M params, {row['cameras']} cams {row['image']}: "
              f"lerobot {row['lerobot_median_ms']:9.1f} ms  runtime {row['runtime_median_ms']:9.1f} ms  "
              f"ratio {row['ratio']:.3f}  (n={row['repeats']}, outputs differ by {row['max_abs_difference']:.1e})",
              flush=True)
    path = save("runtime", {"machine": machine(), "device": args.device, "rows": rows})
    print(f"results: {path}")
    worst = max(r["ratio"] for r in rows)
    print(f"goal (runtime adds <= 5% over lerobot's path): {'met' if worst <= 1.05 else 'NOT met'} "
          f"(worst ratio {worst:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
