"""Fuzz campaign of the converter's input conversions, and its damaged-bag matrix.

1. Every input conversion of the converter (:mod:`kuavo_smolvla_ros.data.fuzz`: camera frames compressed and
   raw, SensorsData and JointState states, JointState and /kuavo_arm_traj actions, claw and simulator gripper
   states and commands, each with arbitrary header stamps and record times) is fed ``--cases`` generated
   messages (hypothesis, default 1000 per stream). Per stream: cases, accepted, rejected, crashes (an
   exception other than ValueError) and unsound outputs (accepted but not finite or of the wrong shape).
2. Every kind of damaged bag (:mod:`kuavo_smolvla_ros.data.damaged`) sorting first, in the middle and last
   among two good bags, converted through the CLI: per kind whether the run went on, the good bags were
   converted and the bag failed once with its own cause.

Exit status 1 if anything crashed, an output was unsound or a damaged bag stopped a run or lost a good bag.
Usage: python bench/bench_fuzz_conversion.py [--cases N] [--seed S] [--skip-bags]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import save


def fuzz_streams(cases: int, seed: int) -> dict[str, dict]:
    """Per stream: cases, accepted, rejected, crashes, unsound, the first problem and the commonest reasons."""
    from kuavo_smolvla_ros.data import fuzz

    return {name: campaign(stream, cases, seed) for name, stream in fuzz.streams().items()}


def campaign(stream, cases: int, seed: int) -> dict:
    """``cases`` generated messages of one stream through the converter's conversion, counted."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    from kuavo_smolvla_ros.data import fuzz

    counts: Counter = Counter()
    reasons: Counter = Counter()
    problems: list[str] = []

    @hypothesis_seed(seed)
    @settings(max_examples=cases, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(msg=stream.messages, recorded=fuzz.record_times)
    def run(msg, recorded):
        counts["cases"] += 1
        try:
            outcome, reason = fuzz.check(stream, msg, recorded)
        except AssertionError as err:
            counts["unsound"] += 1
            problems.append(f"unsound: {err}")
            return
        except Exception as err:  # a crash is what is counted
            counts["crashes"] += 1
            problems.append(f"{type(err).__name__}: {err}")
            return
        counts[outcome] += 1
        if reason:
            reasons[reason.split(":")[0][:60]] += 1

    start = time.perf_counter()
    run()
    seconds = round(time.perf_counter() - start, 2)
    return {"cases": counts["cases"], "accepted": counts["accepted"], "rejected": counts["rejected"],
            "crashes": counts["crashes"], "unsound": counts["unsound"], "seconds": seconds,
            "first_problem": problems[:1], "top_reasons": reasons.most_common(3), "what": stream.describe}


def damaged_matrix() -> dict[str, dict]:
    """Per damaged kind and position: exit code, good bags converted, the bag's FAILED lines and reason."""
    from kuavo_smolvla_ros.data.cli import main as cli
    from kuavo_smolvla_ros.data.damaged import DAMAGES, write_damaged_bag
    from kuavo_smolvla_ros.data.synthetic import SyntheticBag, write_synthetic_bag

    results: dict[str, dict] = {kind: {} for kind in DAMAGES}
    with tempfile.TemporaryDirectory(prefix="kuavo-damaged-") as tmp:
        root = Path(tmp)
        for position, prefix in (("first", "a_"), ("middle", "c_"), ("last", "e_")):
            bags = root / position / "bags"
            write_synthetic_bag(bags / "b_good.bag", "ros1", SyntheticBag(seconds=2, seed=1))
            write_synthetic_bag(bags / "d_good", "mcap", SyntheticBag(seconds=2, seed=2))
            fragments = {}
            for kind in DAMAGES:
                path, fragment = write_damaged_bag(bags, f"{prefix}{kind}", kind)
                fragments[path.name] = (kind, fragment)
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = cli(["convert", str(bags), "-o", str(root / position / "out"), "-t", "1", "-q", "--png"])
                except Exception as exc:
                    code = f"crash: {type(exc).__name__}: {exc}"
            report_path = root / position / "out" / "meta" / "kuavo_conversion.json"
            report = json.loads(report_path.read_text()) if report_path.is_file() else {"episodes": [], "runs": [{}]}
            good = sorted(Path(e["source"]).name for e in report["episodes"])
            bags_report = {Path(b["source"]).name: b for b in report["runs"][-1].get("bags", [])}
            lines = [line for line in err.getvalue().splitlines() if line.startswith("FAILED ")]
            for name, (kind, fragment) in fragments.items():
                entry = bags_report.get(name, {})
                mine = [line for line in lines if line.startswith(f"FAILED {bags / name}: ")]
                results[kind][position] = {
                    "exit": code, "good_converted": good == ["b_good.bag", "d_good"],
                    "status": entry.get("status"), "failed_lines": len(mine),
                    "own_cause": fragment.lower() in entry.get("reason", "").lower(),
                    "reason": entry.get("reason", "")}
            shutil.rmtree(root / position)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="generated messages per stream (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-bags", action="store_true", help="only the message fuzz campaign")
    args = parser.parse_args()
    bad = 0
    streams = fuzz_streams(args.cases, args.seed)
    print(f"{'stream':22s} {'cases':>6s} {'accepted':>8s} {'rejected':>8s} {'crashes':>7s} {'unsound':>7s} {'s':>6s}")
    for name, row in streams.items():
        print(f"{name:22s} {row['cases']:6d} {row['accepted']:8d} {row['rejected']:8d} {row['crashes']:7d} "
              f"{row['unsound']:7d} {row['seconds']:6.1f}")
        if row["crashes"] or row["unsound"]:
            bad += 1
            print(f"    first problem: {row['first_problem'][0]}")
    totals = {k: sum(r[k] for r in streams.values()) for k in ("cases", "accepted", "rejected", "crashes", "unsound")}
    print(f"{'total':22s} {totals['cases']:6d} {totals['accepted']:8d} {totals['rejected']:8d} "
          f"{totals['crashes']:7d} {totals['unsound']:7d}")
    payload = {"cases_per_stream": args.cases, "seed": args.seed, "streams": streams, "totals": totals}
    if not args.skip_bags:
        matrix = damaged_matrix()
        print(f"\n{'damaged bag':22s} {'first':>12s} {'middle':>12s} {'last':>12s}   reason (last position)")
        for kind, positions in matrix.items():
            cells = []
            for position in ("first", "middle", "last"):
                row = positions[position]
                ok = (row["exit"] == 1 and row["good_converted"] and row["status"] == "failed"
                      and row["failed_lines"] == 1 and row["own_cause"])
                bad += not ok
                cells.append("ok" if ok else f"BAD({row['exit']})")
            print(f"{kind:22s} {cells[0]:>12s} {cells[1]:>12s} {cells[2]:>12s}   {positions['last']['reason'][:70]}")
        payload["damaged_bags"] = matrix
    print(f"results: {save('fuzz_conversion', payload)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
