"""Training throughput and wall time of a full run, cached vs online mode, on the built-in data.

    python benchmarks/train_throughput.py [--epochs 10] [key=value ...]

Runs ``python -m splavu_ray.train`` once per mode (fresh run names, shared data cache, so features
are extracted before the cached run is timed... see the 'features' column) and reads the per-epoch
clips/s from the last checkpoint's trainer state. Prints a JSON line per mode and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def run_mode(mode: str, out: Path, epochs: int, extra: list[str]) -> dict:
    name = f"bench-{mode}-{int(time.time())}"
    cmd = [sys.executable, "-m", "splavu_ray.train", f"train.mode={mode}", f"optim.epochs={epochs}",
           f"run_name={name}", f"output_dir={out / name}", *extra]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode:
        sys.exit(f"{mode} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    results = json.loads((out / name / "results.json").read_text())
    state = None
    ckpts = sorted((out / name / "ray" / name).glob("checkpoint_*"))
    if ckpts:
        state = json.loads((ckpts[-1] / "trainer_state.json").read_text())
    joint = [h["clips_per_s"] for h in (state or {}).get("history", []) if h.get("phase") == "joint"]
    return {"mode": mode, "wall_s": round(wall, 1), "train_clips_per_s": round(sum(joint) / max(1, len(joint)), 1),
            "epochs": epochs, "cmap_anonymized": round(results["privacy"]["cmap_anonymized"], 2),
            "top1_anonymized": round(results["action"]["top1_anonymized"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    parser.add_argument("--modes", nargs="+", default=["cached", "online"])
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    rows = [run_mode(m, args.out, args.epochs, args.overrides) for m in args.modes]
    for r in rows:
        print(json.dumps(r))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU\n")
    print("| mode | training clips/s (joint epochs, all workers) | wall time of the full run (s) | epochs |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['train_clips_per_s']} | {r['wall_s']} | {r['epochs']} |")


if __name__ == "__main__":
    main()
