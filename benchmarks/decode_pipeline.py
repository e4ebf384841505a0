"""Clips/s of the Ray Data clip pipeline against a plain single-process PyAV loop, same files, same cores.

    python benchmarks/decode_pipeline.py                     # N = all cores of this machine
    python benchmarks/decode_pipeline.py --cores 2 --videos 320 --out bench.json
    python benchmarks/decode_pipeline.py --cores 2 --videos 320 --epochs 3 --stream   # + one multi-epoch execution
    python benchmarks/decode_pipeline.py --cores 2 --videos 960 --epochs 4 --stream --parallel-baseline   # + no-Ray ceiling

Both sides run the SAME decode code (splavu_ray.distributed.clip_stream.ClipDecoder: one train clip of 16 frames
+ 2 static frames per video, decoded to short side 256 and centre-cropped): the loop calls it in this
process, video after video; the pipeline runs it in ``--cores`` Ray Data actors (ActorPoolStrategy),
with the driver consuming rows as a trainer would (``iter_batches``). Each epoch of the pipeline starts
its actor pool anew (that is how Ray Data runs a dataset; persistent actors are ray#46479), so the
figures are given twice: for the whole epoch, start-up included (the best epoch), and for its steady
state (the rate between the arrival of 25% and 90% of the rows). ``--stream`` adds the trainer's way:
ONE execution of ``clip_dataset(..., epochs=E)`` streams all ``--epochs`` epochs through one actor pool;
its rate is over the whole execution, start-up included, against the loop's rate over the same clips
(all its epochs), averaged over a loop run just before and one just after it. ``--parallel-baseline``
times N plain processes (no Ray) splitting the videos: what the machine's cores give without any
pipeline, since vCPUs that share a physical core or memory bandwidth do not reach N x the loop.
Target (issue 3): pipeline >= 0.8 x N x loop. The load average is recorded, because other processes on
the machine distort both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_clip_video(path: Path, seconds: float, fps: int, width: int, height: int, seed: int) -> None:
    """An H.264 video with realistic-ish content: a textured background, moving blobs, mild noise."""
    import av

    rng = np.random.default_rng(seed)
    n = int(seconds * fps)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = (np.sin(xx / rng.uniform(8, 30)) * np.cos(yy / rng.uniform(8, 30)) * 40 + 110)[..., None]
    base = base + rng.uniform(-40, 40, size=3)
    blobs = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-4, 4), rng.uniform(-4, 4),
              rng.uniform(12, 40), rng.uniform(0, 255, 3)) for _ in range(3)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "23", "preset": "veryfast", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(n):
            img = base.copy()
            for x, y, dx, dy, r, colour in blobs:
                mask = (xx - (x + dx * i) % width) ** 2 + (yy - (y + dy * i) % height) ** 2 < r * r
                img[mask] = colour
            img += rng.normal(0, 3, size=img.shape)
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def make_dataset(folder: Path, videos: int, seconds: float, fps: int, width: int, height: int) -> Path:
    """The videos and a train-split manifest, reused when already there."""
    from splavu_ray.data.manifest import write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(videos):
        path = folder / f"v{i:04d}_{width}x{height}_{seconds:g}s.mp4"
        if not path.is_file():
            write_clip_video(path, seconds, fps, width, height, seed=i)
        rows.append({"uri": str(path), "dataset": "bench", "split": "train", "media": "video", "action": "a"})
    manifest = folder / f"manifest_{videos}_{width}x{height}_{seconds:g}s.parquet"
    write_manifest(str(manifest), rows, ["a"])
    return manifest


def single_process(manifest: Path, args) -> dict:
    """The plain loop: one process decodes the videos one after the other."""
    from splavu_ray.distributed.clip_stream import ClipDecoder, source_table

    table = source_table(str(manifest), ["train"])
    decoder = ClipDecoder(mode="train", clip_len=args.clip_len, size=args.size, seed=0)
    rows = table.to_pylist()
    times = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        for row in rows:
            decoder.decode(row, epoch)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"clips": len(rows), "epoch_s": [round(t, 3) for t in times], "clips_per_s": len(rows) / best,
            "all_epochs_clips_per_s": len(rows) * len(times) / sum(times)}


def _decode_share(manifest: str, clip_len: int, size: int, epochs: int, rank: int, world: int) -> int:
    from splavu_ray.distributed.clip_stream import ClipDecoder, source_table

    rows = source_table(manifest, ["train"]).to_pylist()[rank::world]
    decoder = ClipDecoder(mode="train", clip_len=clip_len, size=size, seed=0)
    for epoch in range(epochs):
        for row in rows:
            decoder.decode(row, epoch)
    return len(rows) * epochs


def parallel_processes(manifest: Path, args) -> dict:
    """The machine's own ceiling: N plain processes (no Ray), each decoding 1/N of the videos for every
    epoch. On a VM whose vCPUs share a physical core or memory bandwidth this is below N x the loop."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(args.cores) as pool:
        pool.starmap(_decode_share, [(str(manifest), args.clip_len, args.size, 0, r, args.cores)
                                     for r in range(args.cores)])  # start-up (imports) not timed
        t0 = time.perf_counter()
        clips = sum(pool.starmap(_decode_share, [(str(manifest), args.clip_len, args.size, args.epochs, r, args.cores)
                                                 for r in range(args.cores)]))
        seconds = time.perf_counter() - t0
    return {"processes": args.cores, "clips": clips, "seconds": round(seconds, 3), "clips_per_s": clips / seconds}


def steady_rate(arrivals: list[tuple[float, int]], lo: float = 0.25, hi: float = 0.9) -> float:
    """Rows/s between the arrival of the first ``lo`` and ``hi`` fractions of the rows: the slope once
    the actors run (the start of an epoch adds actor start-up; its first rows come out in a burst)."""
    total = arrivals[-1][1]
    a = next(p for p in arrivals if p[1] >= lo * total)
    b = next(p for p in arrivals if p[1] >= hi * total)
    return (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else float("nan")


def init_ray(args) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def ray_pipeline(manifest: Path, args) -> dict:
    """One execution per epoch (``clip_dataset(epochs=None)``): a new actor pool every epoch."""
    from splavu_ray.distributed.clip_stream import clip_dataset

    init_ray(args)
    ds = clip_dataset(str(manifest), ["train"], mode="train", clip_len=args.clip_len, size=args.size, seed=0,
                      decode_workers=args.cores, batch_size=args.batch_size)
    epochs = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        arrivals = []  # (time, rows so far)
        n = 0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
            n += len(batch["row_index"])
            arrivals.append((time.perf_counter() - t0, n))
        epochs.append({"epoch_s": round(arrivals[-1][0], 3), "clips": n, "first_row_s": round(arrivals[0][0], 3),
                       "steady_clips_per_s": steady_rate(arrivals)})
    best = min(epochs, key=lambda e: e["epoch_s"])
    return {"epochs": epochs, "clips_per_s": best["clips"] / best["epoch_s"],
            "steady_clips_per_s": max(e["steady_clips_per_s"] for e in epochs)}


def ray_stream(manifest: Path, args) -> dict:
    """ONE execution streaming every epoch (``clip_dataset(epochs=E)``, what the trainer runs): one actor
    pool; the rate is over the whole execution, start-up included."""
    from splavu_ray.distributed.clip_stream import clip_dataset

    init_ray(args)
    ds = clip_dataset(str(manifest), ["train"], mode="train", clip_len=args.clip_len, size=args.size, seed=0,
                      decode_workers=args.cores, batch_size=args.batch_size, epochs=args.epochs)
    t0 = time.perf_counter()
    arrivals, n, last_row_s = [], 0, {}  # last_row_s: epoch -> arrival of its last row
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
        n += len(batch["row_index"])
        now = time.perf_counter() - t0
        arrivals.append((now, n))
        for e in np.unique(batch["epoch"]).tolist():
            last_row_s[int(e)] = round(now, 3)
    total = arrivals[-1][0]
    return {"epochs": args.epochs, "clips": n, "execution_s": round(total, 3), "first_row_s": round(arrivals[0][0], 3),
            "epoch_last_row_s": [last_row_s[e] for e in sorted(last_row_s)], "clips_per_s": n / total,
            "steady_clips_per_s": steady_rate(arrivals)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="N: decode actors and Ray CPUs")
    parser.add_argument("--videos", type=int, default=320)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--size", type=int, default=256, help="decoded square side (eval resize of 224)")
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8, help="videos per map_batches call")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--stream", action="store_true",
                        help="also measure ONE execution streaming all --epochs epochs (clip_dataset(epochs=E))")
    parser.add_argument("--parallel-baseline", action="store_true",
                        help="also time --cores plain processes (no Ray) splitting the videos: the machine's ceiling")
    parser.add_argument("--data", default=str(Path.home() / ".cache/splavu_ray/bench_videos"))
    parser.add_argument("--out", default="outputs/bench/decode_pipeline.json")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    manifest = make_dataset(Path(args.data), args.videos, args.seconds, args.fps, args.width, args.height)
    print(f"dataset: {args.videos} videos {args.width}x{args.height}, {args.seconds:g} s at {args.fps} fps "
          f"({time.perf_counter() - t0:.0f} s to prepare)", flush=True)
    load_before = os.getloadavg()
    single = single_process(manifest, args)
    print(f"single process: {single['clips_per_s']:.1f} clips/s (epochs {single['epoch_s']} s)", flush=True)
    pipe = ray_pipeline(manifest, args)
    print(f"ray data, {args.cores} actors: {pipe['clips_per_s']:.1f} clips/s per epoch, "
          f"{pipe['steady_clips_per_s']:.1f} clips/s steady ({pipe['epochs']})", flush=True)
    stream = ray_stream(manifest, args) if args.stream else None
    if stream:
        # The loop again, right after: this machine's single-core speed drifts by 10-30% within minutes,
        # so the stream is compared with the mean of the loop just before and just after it.
        after = single_process(manifest, args)
        stream["single_after"] = after
        stream["single_mean_clips_per_s"] = (single["all_epochs_clips_per_s"] + after["all_epochs_clips_per_s"]) / 2
        print(f"ray data stream, {args.epochs} epochs in one execution: {stream['clips_per_s']:.1f} clips/s "
              f"(first row {stream['first_row_s']} s, epochs' last rows {stream['epoch_last_row_s']} s); single "
              f"process over the same clips {single['all_epochs_clips_per_s']:.1f} clips/s before, "
              f"{after['all_epochs_clips_per_s']:.1f} after", flush=True)
    import ray

    ray.shutdown()
    ceiling = parallel_processes(manifest, args) if args.parallel_baseline else None
    if ceiling:
        print(f"{args.cores} plain processes, no Ray: {ceiling['clips_per_s']:.1f} clips/s (x"
              f"{ceiling['clips_per_s'] / single['all_epochs_clips_per_s']:.2f} of the loop): this machine's ceiling",
              flush=True)
    result = {
        "command": "python benchmarks/decode_pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_before": [round(x, 1) for x in load_before],
                    "loadavg_after": [round(x, 1) for x in os.getloadavg()]},
        "args": vars(args), "single_process": single, "ray_pipeline": pipe,
        "ratio_epoch": pipe["clips_per_s"] / single["clips_per_s"],
        "ratio_steady": pipe["steady_clips_per_s"] / single["clips_per_s"],
        "target_ratio": 0.8 * args.cores,
    }
    if stream:
        result["ray_stream"] = stream
        result["ratio_stream"] = stream["clips_per_s"] / stream["single_mean_clips_per_s"]
    if ceiling:
        result["parallel_processes"] = ceiling
        result["ratio_parallel_processes"] = ceiling["clips_per_s"] / single["all_epochs_clips_per_s"]
    stream_ratio = f", {result['ratio_stream']:.2f} (stream)" if stream else ""
    print(f"ratio: {result['ratio_epoch']:.2f} (epoch), {result['ratio_steady']:.2f} (steady){stream_ratio}; "
          f"target {result['target_ratio']:.1f}; load average {result['machine']['loadavg_before']} -> "
          f"{result['machine']['loadavg_after']}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
