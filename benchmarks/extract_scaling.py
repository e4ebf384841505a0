"""Feature extraction's scaling: rows/s of the Ray Data pipeline on N cores against one plain process.

    python benchmarks/extract_scaling.py                          # N = all cores, 300 videos
    python benchmarks/extract_scaling.py --videos 300 --out outputs/bench/extract_scaling.json

Both sides do the same work per row, with the same code and the same frozen backbone
(``--backbone``, default the tiny random ViT, so decoding dominates as it does for small encoders):
- single: ONE plain process, no Ray: ``splavu_ray.models.embedder.Embedder`` (data.frames.RowDecoder +
  FeatureEmbedder) over the rows in a loop, torch on one thread; timed from building the embedder to
  the last row, start-up included;
- pipeline: what a user runs, ``python -m splavu_ray.features`` in a fresh process with all N cores
  (a fresh local Ray of the machine's CPUs, ``data.decode_workers=N``, ``scaling.num_workers=N`` embedding actors
  of one CPU each), into a fresh store; timed from the command's start to its exit, so Ray's start-up,
  the driver's backbone description, the shard writes and the metadata are all included.

It prints both rates, their ratio to N x single and the target, 0.8 x N x single (issue 18). The videos
(H.264, textured background and moving blobs) come from benchmarks/decode_pipeline.py and are reused
when already there. The load average (``uptime``) is recorded before and after, because other
processes on the machine slow both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

TARGET = 0.8


def overrides(args) -> list[str]:
    return [f"backbone.source={args.backbone}", f"data.num_eval_clips={args.eval_clips}",
            f"data.num_static_frames={args.static_frames}"]


def single_process(manifest: Path, args) -> dict:
    """One process, no Ray: decode + embed every row in a loop (start-up included)."""
    import torch

    from splavu_ray.config import load_config
    from splavu_ray.data.manifest import read_manifest
    from splavu_ray.models.embedder import Embedder

    torch.set_num_threads(1)
    rows = read_manifest(str(manifest)).rows()
    t0 = time.perf_counter()
    embedder = Embedder(load_config(None, overrides(args)).to_dict())
    ok = sum(embedder.embed_row(row)["ok"] for row in rows)
    seconds = time.perf_counter() - t0
    return {"rows": len(rows), "ok": ok, "seconds": round(seconds, 2), "rows_per_s": len(rows) / seconds}


def pipeline(manifest: Path, args) -> dict:
    """``python -m splavu_ray.features`` with N cores, into a fresh store (start-up included)."""
    n = args.cores
    out = Path(tempfile.mkdtemp(prefix="extract_scaling_"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "splavu_ray.features", "--manifest", str(manifest), "--out", str(out / "store"),
           *overrides(args), f"data.decode_workers={n}", f"scaling.num_workers={n}", "scaling.cpus_per_worker=1",
           f"data.decode_batch_size={args.decode_batch_size}", *args.pipeline_override]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode:
        raise SystemExit(f"the pipeline failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"rows": result["rows"], "rejects": result["rejects"], "seconds": round(seconds, 2),
            "rows_per_s": result["rows"] / seconds, "command": " ".join(cmd[1:])}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=os.cpu_count(),
                        help="N: the pipeline's decode tasks and embedding actors (Ray gets every core)")
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each video")
    parser.add_argument("--fps", type=int, default=16)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--backbone", default="random:tiny", help="backbone.source of both sides")
    parser.add_argument("--eval-clips", type=int, default=2, help="data.num_eval_clips")
    parser.add_argument("--static-frames", type=int, default=2, help="data.num_static_frames")
    parser.add_argument("--decode-batch-size", type=int, default=4, help="data.decode_batch_size")
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "splavu_extract_scaling"))
    parser.add_argument("--pipeline-override", action="append", default=[],
                        help="a config override for the pipeline side only (repeatable), e.g. data.decode_batch_size=8")
    parser.add_argument("--out", help="write the result as JSON here")
    args = parser.parse_args(argv)

    from decode_pipeline import make_dataset

    manifest = make_dataset(Path(args.data_dir), args.videos, args.seconds, args.fps, args.width, args.height)
    before = uptime()
    single = single_process(manifest, args)
    ray = pipeline(manifest, args)
    after = uptime()
    n = args.cores
    ratio = ray["rows_per_s"] / (n * single["rows_per_s"])
    result = {
        "videos": args.videos, "video": f"{args.width}x{args.height}, {args.seconds:g} s at {args.fps} fps, H.264",
        "backbone": args.backbone, "cores": n, "single": single, "pipeline": ray,
        "ratio_to_n_single": round(ratio, 3), "target_ratio": TARGET, "target_met": ratio >= TARGET,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "uptime_before": before, "uptime_after": after},
    }
    print(f"single process: {single['rows_per_s']:.2f} rows/s ({single['rows']} rows in {single['seconds']} s)")
    print(f"pipeline, {n} cores: {ray['rows_per_s']:.2f} rows/s ({ray['rows']} rows in {ray['seconds']} s, "
          "Ray start-up included)")
    print(f"pipeline / ({n} x single) = {ratio:.2f}; target {TARGET} -> {'met' if ratio >= TARGET else 'NOT met'}")
    print(f"before: {before}\nafter:  {after}", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
