"""Training throughput and wall time of a full run, cached vs online mode, on the built-in data.

    python benchmarks/train_throughput.py [--epochs 10] [key=value ...]

Runs ``python -m splavu_ray.train`` once per mode with fresh run names and the shared data cache (the
dataset and the feature store are built by the first run that needs them; the "data + features" phase
shows it), reads the per-epoch clips/s from the newest checkpoint's trainer state and the phase times
from results.json, and prints a JSON line per mode and a Markdown table. Each run's console goes to
OUT/RUN/train.log. Both modes evaluate from the feature store (online mode trains on decoded videos).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run_mode(mode: str, out: Path, epochs: int, extra: list[str]) -> dict:
    name = f"bench-{mode}-{int(time.time())}"
    cmd = [sys.executable, "-m", "splavu_ray.train", f"train.mode={mode}", f"optim.epochs={epochs}",
           f"run_name={name}", f"output_dir={out / name}", *extra]
    print(f"[bench] {' '.join(cmd[1:])}", flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    (out / name).mkdir(parents=True, exist_ok=True)
    (out / name / "train.log").write_text(proc.stdout + proc.stderr)  # the per-epoch console lines
    if proc.returncode:
        sys.exit(f"{mode} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    results = json.loads((out / name / "results.json").read_text())
    # The newest checkpoint's trainer state holds the whole per-epoch history (clips/s per epoch).
    states = sorted((out / name / "ray" / name).glob("checkpoint_*/trainer_state.json"))
    history = json.loads(states[-1].read_text())["history"] if states else []
    joint = [h["clips_per_s"] for h in history if h.get("phase") == "joint"]
    heads = [h["clips_per_s"] for h in history if h.get("phase") != "joint"]
    run = results["run"]
    return {"mode": mode, "wall_s": round(wall, 1), "epochs": epochs,
            "train_clips_per_s": round(statistics.median(joint), 1) if joint else None,
            "head_clips_per_s": round(statistics.median(heads), 1) if heads else None,
            "phases_s": run.get("phases_s"),
            "cmap_anonymized": round(results["privacy"]["cmap_anonymized"], 2),
            "top1_anonymized": round(results["action"]["top1_anonymized"], 2),
            "loadavg_after": [round(x, 1) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    parser.add_argument("--modes", nargs="+", default=["cached", "online"])
    parser.add_argument("--online-overrides", nargs="*", default=["scaling.cpus_per_worker=0.5"],
                        help="extra overrides of the online run: its decode actors need CPUs the training "
                        "workers leave free (the default fits 2 workers + 1 decoder on 2 cores)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    rows = [run_mode(m, args.out, args.epochs, args.overrides + (args.online_overrides if m == "online" else []))
            for m in args.modes]
    for r in rows:
        print(json.dumps(r))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU\n")
    print("| mode | clips/s, joint epochs (median, all workers) | clips/s, head epochs | full run wall (s) "
          "| of which data + features / training / evaluation (s) | joint epochs |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        p = r["phases_s"] or {}
        print(f"| {r['mode']} | {r['train_clips_per_s']} | {r['head_clips_per_s']} | {r['wall_s']} | "
              f"{p.get('features')} / {p.get('training')} / {p.get('evaluation')} | {r['epochs']} |")


if __name__ == "__main__":
    main()
