"""Sweep throughput: trials per hour of ``sweeps/loss_weights.yaml``, and where one trial's time goes.

    python benchmarks/sweep_throughput.py [--trials 24] [--out outputs/bench/sweep] [--skip-single] [key=value ...]

1. One demo-size trial alone: ``python -m splavu_ray.sweep sweeps/loss_weights.yaml n_trials=1`` in a fresh
   output folder (demo.yaml's data and epochs, one Ray Train worker, scored on the selection split). Its
   ``record.json`` holds the trial's seconds and their breakdown (results.json ``timing``: Ray Train
   start/stop, the worker's setup, epochs and checkpoint/report round trips, the export, evaluation per task).
2. The sweep itself at ``--trials`` (the sweep file's ``n_trials`` override), as many trials at a time as
   the cluster holds (the sweep's ``concurrency``: trial drivers hold a ``splavu_driver``, no CPU).

Both run the real command (Ray Tune + Optuna, the feature store extracted once into the shared cache, so a
first run pays for it: see ``features ready`` in the log). Trials per hour are given two ways: over the
trials' own span (first trial's start to last trial's end, from the records) and over the whole command.
Extra ``key=value`` arguments go to both sweep commands (e.g. ``base.scaling.cpus_per_worker=0.5`` for four
trials at a time on 2 cores, ``resources.max_concurrent=1`` for one). Each command's console goes to
OUT/NAME/sweep.log.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

SWEEP = "sweeps/loss_weights.yaml"


def run_sweep(out: Path, trials: int, extra: list[str], limit_s: float | None = None) -> dict:
    """Run the sweep command; with ``limit_s`` it is interrupted (SIGINT: Tune stops its trials) after that many
    seconds, and the trials that finished by then are what gets measured (``stopped_at_limit``)."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "splavu_ray.sweep", SWEEP, f"n_trials={trials}", f"output_dir={out}", *extra]
    print(f"[bench] {' '.join(cmd[1:])}", flush=True)
    load_before = os.getloadavg()
    t0 = time.time()
    with open(out / "sweep.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        stopped = False
        try:
            proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            stopped = True
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait()
    wall = time.time() - t0
    if proc.returncode and not stopped:
        sys.exit(f"sweep failed (log: {out / 'sweep.log'}):\n{(out / 'sweep.log').read_text()[-4000:]}")
    records = [json.loads(p.read_text()) for p in sorted((out / "trials").glob("*/record.json"))]
    if not records:
        sys.exit(f"no trial records in {out / 'trials'}")
    starts = [r["finished"] - r["train_eval_s"] for r in records]
    span = max(r["finished"] for r in records) - min(starts)
    return {"trials": len(records), "wall_s": round(wall, 1), "trial_span_s": round(span, 1),
            "trials_per_hour_span": round(3600 * len(records) / span, 1),
            "trials_per_hour_wall": round(3600 * len(records) / wall, 1),
            "trial_s_median": round(statistics.median(r["train_eval_s"] for r in records), 1),
            "timing_median": median_timing([r.get("timing") or {} for r in records]),
            "stopped_at_limit": stopped,
            "loadavg_before": [round(x, 1) for x in load_before],
            "loadavg_after": [round(x, 1) for x in os.getloadavg()]}


def flat_timing(timing: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in timing.items():
        if isinstance(v, dict):
            out.update(flat_timing(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and not k.endswith("pid") \
                and "resources" not in prefix:  # seconds only
            out[f"{prefix}{k}"] = float(v)
    return out


def median_timing(timings: list[dict]) -> dict[str, float]:
    flat = [flat_timing(t) for t in timings]
    keys = sorted({k for f in flat for k in f})
    return {k: round(statistics.median(f[k] for f in flat if k in f), 2) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24, help="n_trials of the sweep run (default 24)")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/sweep"))
    parser.add_argument("--skip-single", action="store_true", help="skip the one-trial run")
    parser.add_argument("--skip-sweep", action="store_true", help="only the one-trial run")
    parser.add_argument("--limit-s", type=float, help="stop the sweep run after this many seconds (SIGINT) and "
                        "measure the trials finished by then")
    parser.add_argument("overrides", nargs="*", help="sweep-file overrides for both commands")
    args = parser.parse_intermixed_args()
    stamp = int(time.time())
    rows = {}
    if not args.skip_single:
        rows["single"] = run_sweep(args.out / f"single-{stamp}", 1, args.overrides)
        print(json.dumps({"run": "single", **rows["single"]}), flush=True)
    if not args.skip_sweep:
        rows["sweep"] = run_sweep(args.out / f"sweep{args.trials}-{stamp}", args.trials, args.overrides, args.limit_s)
        print(json.dumps({"run": f"sweep x{args.trials}", **rows["sweep"]}), flush=True)
    print(f"\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()}\n")
    print("| run | trials | command wall (s) | median trial (s) | trials/hour (trial span) | trials/hour (wall) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['trials']} | {r['wall_s']} | {r['trial_s_median']} | {r['trials_per_hour_span']} | "
              f"{r['trials_per_hour_wall']} |")
    for name, r in rows.items():
        print(f"\n{name}: median seconds per trial by part")
        for k, v in r["timing_median"].items():
            print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
