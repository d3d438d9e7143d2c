"""``kuavo-sim-eval CHECKPOINT``: score any checkpoint in the simulator, in simulated time, through the node's
executor (:mod:`kuavo_smolvla_ros.sim.evaluate`).

Prints success per task with a 95% Wilson interval, the model latency in control ticks it ran with, the
held ticks and how far the episodes got (per milestone of the task: the hands holding the object, each target
reached); writes ``sim_eval.json`` (settings and every episode) and ``sim_eval.png`` (hand paths per task,
success per task). The same object seeds and noise streams for every checkpoint, so two checkpoints are
compared on the same episodes. Exit codes: 0 scored, 2 the checkpoint or an argument is refused (one line).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval (default 95%) of a success rate ``successes / trials``, as (low, high) in
    0..1; (0, 1) without trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(results: Mapping[str, Sequence]) -> dict[str, dict]:
    """Per task: episodes, successes, rate, its 95% interval, mean success time (s) of the solved ones, mean
    held ticks per episode, and how far the episodes got: per milestone of the task's scene
    (:attr:`~kuavo_smolvla_ros.sim.scenes.Scene.milestones`, in order) the episodes that reached it."""
    from kuavo_smolvla_ros.sim.scenes import scene_for

    summary = {}
    for task, runs in results.items():
        solved = [r for r in runs if r.success]
        low, high = wilson_interval(len(solved), len(runs))
        scene = scene_for(task)
        progress = [scene.progress(r.events) for r in runs]
        summary[task] = {
            "episodes": len(runs), "successes": len(solved),
            "success": len(solved) / len(runs) if runs else float("nan"), "ci95": [low, high],
            "mean_success_time_s": (sum(r.success_time for r in solved) / len(solved)) if solved else None,
            "mean_held_ticks": (sum(r.held_ticks for r in runs) / len(runs)) if runs else None,
            "milestones": [{"milestone": name, "reached": sum(p > i for p in progress)}
                           for i, name in enumerate(scene.milestones)],
        }
    return summary


def episode_record(result) -> dict:
    """One episode as JSON: seed, object start, success, times, inferences, held ticks, milestones reached
    (their number, in the order of the task's :attr:`~kuavo_smolvla_ros.sim.scenes.Scene.milestones`) and the
    grasps and releases (kind, hand, table xy in m, time in s)."""
    from kuavo_smolvla_ros.sim.scenes import scene_for

    return {"seed": result.seed, "object_start": list(result.object_start), "success": bool(result.success),
            "success_time": result.success_time, "duration": round(result.duration, 6),
            "inferences": result.inferences, "held_ticks": result.held_ticks,
            "milestones_reached": scene_for(result.task).progress(result.events),
            "events": [{"kind": e.kind, "arm": e.arm, "xy": [round(float(v), 4) for v in e.xy], "t": round(e.t, 4)}
                       for e in result.events]}


def write_report(output: Path, runtime, results: Mapping[str, Sequence], summary: Mapping[str, dict], *,
                 latency: int, execution, first_seed: int, noise_seed: int, jpeg_quality: int | None) -> None:
    """``output/sim_eval.json`` (settings, :func:`summarise`'s table, every episode) and ``output/sim_eval.png``,
    each written atomically."""
    from kuavo_smolvla_ros.atomic import write_json
    from kuavo_smolvla_ros.sim.report import plot_closed_loop

    report = {"checkpoint": str(runtime.info.path), "latency_ticks": latency, "num_steps": runtime.num_steps,
              "chunk_transition": execution.chunk_transition, "blend_steps": execution.blend_steps,
              "n_action_steps": runtime.n_action_steps, "control_rate_hz": execution.rate_hz,
              "first_seed": first_seed, "noise_seed": noise_seed, "camera_jpeg_quality": jpeg_quality or 0,  # 0: raw
              "success": summary,
              "episodes": {task: [episode_record(r) for r in runs] for task, runs in results.items()}}
    write_json(output / "sim_eval.json", report)
    trajectories = {task: [{"states": r.states, "object_start": r.object_start, "success": r.success}
                           for r in runs] for task, runs in results.items()}
    plot_closed_loop(trajectories, {runtime.info.path.name: {t: s["success"] for t, s in summary.items()}},
                     output / "sim_eval.png")


def main(argv: list[str] | None = None) -> int:
    from kuavo_smolvla_ros.atomic import folder_problem
    from kuavo_smolvla_ros.tasks import default_catalog

    catalog = default_catalog()
    parser = argparse.ArgumentParser(
        prog="kuavo-sim-eval",
        description="Score a checkpoint in the simulator, in simulated time, through the policy node's executor: "
                    "success per task with a 95% interval; writes sim_eval.json and sim_eval.png.",
        epilog="exit status:\n  0  scored: the table is printed, sim_eval.json and sim_eval.png written\n"
               "  2  refused, one \"error:\" line, nothing written: the checkpoint (missing, or refused as by "
               "kuavo-smolvla-inspect) or an argument\n"
               "  130  interrupted (Ctrl-C): one \"interrupted\" line, nothing written\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a checkpoint folder (what kuavo-smolvla-inspect accepts)")
    parser.add_argument("--tasks", nargs="+", default=["all"], metavar="TASK",
                        help=f"tasks by name, alias or id ({', '.join(t.name for t in catalog)}), separated by "
                             "spaces or commas, or all")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task (default 20)")
    parser.add_argument("--latency-ticks", type=int, default=None,
                        help="model latency in control ticks (default: what the checkpoint measures here)")
    parser.add_argument("--first-seed", type=int, default=None, help="object seed of the first episode "
                        "(default: the evaluation seeds, far from the recorded demonstrations')")
    parser.add_argument("--noise-seed", type=int, default=0, help="seed of the flow-matching noise streams (default 0)")
    parser.add_argument("--num-steps", type=int, default=None, help="denoising steps (default: the checkpoint's)")
    parser.add_argument("--chunk-transition", choices=("blend", "rtc"), default="blend",
                        help="how chunks join, as the node's chunk_transition parameter (default blend)")
    parser.add_argument("--blend-steps", type=int, default=2, help="actions blended at a seam (default 2)")
    parser.add_argument("--jpeg-quality", type=int, default=None, metavar="Q",
                        help="the cameras reach the policy through a JPEG at quality Q, as sim_robot sends them and "
                             "recorded bags hold them (default 90, CAMERA_JPEG_QUALITY); 0: the rendered pixels, for "
                             "a policy trained on bags of a robot profile with raw cameras")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--output", type=Path, default=None,
                        help="folder for sim_eval.json and sim_eval.png "
                             "(default: outputs/sim_eval/<parent>_<checkpoint folder>)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (it is off whenever stderr is not a terminal)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.exit(EXIT_REFUSED, f"kuavo-sim-eval: error: --episodes must be >= 1, got {args.episodes}\n")
    if args.latency_ticks is not None and args.latency_ticks < 1:
        parser.exit(EXIT_REFUSED, f"kuavo-sim-eval: error: --latency-ticks must be >= 1, got {args.latency_ticks}\n")
    if args.first_seed is not None and args.first_seed < 0:
        parser.exit(EXIT_REFUSED, f"kuavo-sim-eval: error: --first-seed must be >= 0, got {args.first_seed}\n")
    if args.blend_steps < 0:
        parser.exit(EXIT_REFUSED, f"kuavo-sim-eval: error: --blend-steps must be >= 0, got {args.blend_steps}\n")
    if args.output is not None and args.output.exists() and not args.output.is_dir():
        parser.exit(EXIT_REFUSED, f"kuavo-sim-eval: error: --output {args.output} exists and is not a folder\n")
    problem = folder_problem(args.output) if args.output is not None else None  # (before the episodes, not after)
    if problem:
        parser.exit(EXIT_REFUSED, f"kuavo-sim-eval: error: --output {args.output}: {problem}\n")
    if args.jpeg_quality is not None and not 0 <= args.jpeg_quality <= 100:
        parser.exit(EXIT_REFUSED,
                    f"kuavo-sim-eval: error: --jpeg-quality must be in 0..100 (0: raw), got {args.jpeg_quality}\n")
    if args.num_steps is not None and args.num_steps < 1:
        parser.exit(EXIT_REFUSED, f"kuavo-sim-eval: error: --num-steps must be >= 1, got {args.num_steps}\n")
    names = [part.strip() for given in args.tasks for part in given.split(",") if part.strip()]  # (as sim-record)
    if not names:
        parser.exit(EXIT_REFUSED, "kuavo-sim-eval: error: --tasks names no task\n")
    if "all" in names and len(names) > 1:
        parser.exit(EXIT_REFUSED, f"kuavo-sim-eval: error: --tasks: 'all' stands alone, got {' '.join(args.tasks)!r}\n")
    try:
        tasks = list(catalog) if names == ["all"] else [catalog.get(t) for t in names]
    except (KeyError, ValueError) as err:
        parser.exit(EXIT_REFUSED, f"kuavo-sim-eval: error: {err.args[0]}\n")
    repeated = sorted({t.name for t in tasks if tasks.count(t) > 1})
    if repeated:
        parser.exit(EXIT_REFUSED, f"kuavo-sim-eval: error: --tasks names {', '.join(repeated)} more than once\n")
    try:  # Ctrl-C anywhere (imports, the checkpoint's load, scoring): one line, never a traceback
        return score(args, tasks)
    except KeyboardInterrupt:
        print("kuavo-sim-eval: interrupted: nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED


def score(args: argparse.Namespace, tasks: list) -> int:
    """Open, evaluate, report (see the module docstring); returns the exit code. Writes nothing before
    every episode is scored; a KeyboardInterrupt before that propagates to the caller."""
    from kuavo_smolvla_ros.control.execution import ExecutionSettings
    from kuavo_smolvla_ros.policy.checkpoint import CheckpointError
    from kuavo_smolvla_ros.policy.runtime import PolicyRuntime
    from kuavo_smolvla_ros.sim.evaluate import EVAL_SEED_BASE, evaluate, measured_latency_ticks
    from kuavo_smolvla_ros.sim.render import CAMERA_JPEG_QUALITY

    try:
        runtime = PolicyRuntime.open(args.checkpoint, device=args.device, num_steps=args.num_steps)
    except (CheckpointError, ValueError, RuntimeError) as err:
        print(f"kuavo-sim-eval: error: {err}", file=sys.stderr)
        return EXIT_REFUSED
    execution = ExecutionSettings(n_action_steps=runtime.n_action_steps, chunk_transition=args.chunk_transition,
                                  blend_steps=args.blend_steps)
    # the folder and its parent: task4_sorting/best and smolvla_reflow/best must not overwrite each other
    output = args.output or Path("outputs") / "sim_eval" / f"{runtime.info.path.parent.name}_{runtime.info.path.name}"
    if output.exists() and not output.is_dir():
        print(f"kuavo-sim-eval: error: --output {output} exists and is not a folder", file=sys.stderr)
        return EXIT_REFUSED
    first_seed = EVAL_SEED_BASE if args.first_seed is None else args.first_seed
    latency = args.latency_ticks or measured_latency_ticks(runtime, execution)
    jpeg_quality = CAMERA_JPEG_QUALITY if args.jpeg_quality is None else (args.jpeg_quality or None)
    results = evaluate(runtime, tasks, args.episodes, first_seed=first_seed, noise_seed=args.noise_seed,
                       progress=not args.quiet and sys.stderr.isatty(), latency_ticks=latency,
                       execution=execution, jpeg_quality=jpeg_quality)
    try:
        output.mkdir(parents=True, exist_ok=True)  # (only now: an interrupted or refused run leaves no folder)
    except OSError as err:
        print(f"kuavo-sim-eval: error: --output {output}: {err.strerror}", file=sys.stderr)
        return EXIT_REFUSED
    summary = summarise(results)
    try:
        write_report(output, runtime, results, summary, latency=latency, execution=execution, first_seed=first_seed,
                     noise_seed=args.noise_seed, jpeg_quality=jpeg_quality)
    except KeyboardInterrupt:  # (each file is written atomically: there whole or not at all)
        written = [name for name in ("sim_eval.json", "sim_eval.png") if (output / name).is_file()]
        print(f"kuavo-sim-eval: interrupted while writing: {', '.join(written) or 'nothing'} written under {output}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{runtime.info.path}: {args.episodes} episodes per task, model latency {latency} tick(s) at "
          f"{execution.rate_hz:g} Hz, {runtime.num_steps} steps, chunk transition {execution.chunk_transition}, "
          f"cameras {'raw' if jpeg_quality is None else f'JPEG {jpeg_quality}'}")
    for task, s in summary.items():
        low, high = s["ci95"]
        print(f"  {task:<14} {s['successes']:>3}/{s['episodes']:<3} {100 * s['success']:5.1f}%  "
              f"(95% CI {100 * low:.0f}-{100 * high:.0f}%)  held ticks/episode {s['mean_held_ticks']:.1f}")
        print("      reached: " + "; ".join(f"{m['milestone']}: {m['reached']}/{s['episodes']}"
                                        for m in s["milestones"]))
    print(f"wrote {output / 'sim_eval.json'} and {output / 'sim_eval.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
