"""Seconds to decode one 16-frame clip near the start vs near the end of a long video: keyframe seeking
(``decode_video``'s default) against one pass from the first frame (``seek=False``), side by side.

    timeout 900 python benchmarks/seek_decode.py                       # 5 min, 568x320 H.264, GOP 5 s
    timeout 900 python benchmarks/seek_decode.py --reps 5 --out outputs/bench/seek_decode.json

The video is generated once (textured background, moving blobs, mild noise; libx264 crf 23, preset
veryfast, B-frames on, a keyframe every ``--gop-s`` seconds plus scene cuts) into
``--cache-dir`` (default ``~/.cache/splavu_ray/bench_videos``). Each repetition times the two clip
positions (``--positions``, fractions of the length) with both decoders, interleaved so that a change
in machine load hits both sides alike; the medians of wall time and of this process's CPU time are printed
(on a shared machine the CPU time is the steadier of the two: waiting for a core does not count).
A clip is requested the way the training decoder asks for one: a plan ``f(n) -> indices`` with no
trusted frame count, so the decoder also counts the frames. Every seeked clip is checked equal to the
one-pass clip, pixel for pixel.
Target (issue 18): the clip at 90% costs at most 2x the clip at the start. The pre-roll of each position
(frames from its keyframe to the clip's first frame, decoded for their references only) is printed: with
the default 5 s GOP at 30 fps it is 0-149 frames, 75 on average for a random clip; the clip at 90% of
this video has 136, close to the worst case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_long_video(path: Path, seconds: float, fps: int, width: int, height: int, gop_s: float,
                     seed: int = 0) -> None:
    """H.264 with realistic-ish content and GOP, written to a temporary name and renamed when whole."""
    import av

    rng = np.random.default_rng(seed)
    n = int(seconds * fps)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = (np.sin(xx / rng.uniform(8, 30)) * np.cos(yy / rng.uniform(8, 30)) * 40 + 110)[..., None]
    base = (base + rng.uniform(-40, 40, size=3)).astype(np.float32)
    blobs = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-3, 3), rng.uniform(-3, 3),
              rng.uniform(12, 40), rng.uniform(0, 255, 3)) for _ in range(4)]
    noise = rng.normal(0, 3, size=(8, height, width, 3)).astype(np.float32)  # recycled: encoding, not numpy, is timed
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={
            "crf": "23", "preset": "veryfast", "g": str(int(gop_s * fps)), "keyint_min": str(fps), "threads": "2"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(n):
            img = base + noise[i % len(noise)]
            for x, y, dx, dy, r, colour in blobs:
                cx, cy = (x + dx * i) % width, (y + dy * i) % height
                y0, y1 = int(max(cy - r, 0)), int(min(cy + r, height))
                x0, x1 = int(max(cx - r, 0)), int(min(cx + r, width))
                sub = (xx[y0:y1, x0:x1] - cx) ** 2 + (yy[y0:y1, x0:x1] - cy) ** 2 < r * r
                img[y0:y1, x0:x1][sub] = colour
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    os.replace(tmp, path)


def keyframes(path: Path) -> tuple[int, list[int]]:
    """(packets, frame indices of the keyframes) by demuxing."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts, key = [], []
        for p in c.demux(s):
            if p.size:
                pts.append(p.pts)
                key.append(p.is_keyframe)
    order = np.argsort(pts, kind="stable")
    rank = np.empty(len(pts), np.int64)
    rank[order] = np.arange(len(pts))
    return len(pts), sorted(rank[np.flatnonzero(key)].tolist())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--width", type=int, default=568)
    ap.add_argument("--height", type=int, default=320)
    ap.add_argument("--gop-s", type=float, default=5.0, help="seconds between forced keyframes")
    ap.add_argument("--clip-len", type=int, default=16)
    ap.add_argument("--positions", type=float, nargs="+", default=[0.0, 0.9])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cache-dir", default="~/.cache/splavu_ray/bench_videos")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)

    from splavu_ray.data.decode import decode_video

    cache = Path(args.cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"long_{args.width}x{args.height}_{args.seconds:g}s_{args.fps}fps_gop{args.gop_s:g}s.mp4"
    if not path.is_file():
        t0 = time.perf_counter()
        print(f"[seek_decode] writing {path} (once) ...", flush=True)
        write_long_video(path, args.seconds, args.fps, args.width, args.height, args.gop_s)
        print(f"[seek_decode] written in {time.perf_counter() - t0:.0f} s", flush=True)
    n, keys = keyframes(path)
    gaps = np.diff(keys) if len(keys) > 1 else np.array([n])
    print(f"[seek_decode] {path.name}: {n} frames, {len(keys)} keyframes (gap median {np.median(gaps):.0f}, "
          f"max {gaps.max()} frames), {path.stat().st_size / 1e6:.1f} MB; load avg {os.getloadavg()}", flush=True)

    def plan_at(frac: float):
        return lambda count: np.arange(args.clip_len) + int(round(frac * max(count - args.clip_len, 0)))

    preroll = {}  # frames decoded from the keyframe before the clip's first frame (worst case: the GOP length)
    for p in args.positions:
        first = int(plan_at(p)(n)[0])
        preroll[f"{p:g}"] = first - max(k for k in keys if k <= first)
    print("[seek_decode] pre-roll frames (keyframe -> clip start): " +
          ", ".join(f"{float(k):.0%}: {v}" for k, v in preroll.items()), flush=True)
    # seconds[clock][position][decoder]: wall time, and this process's CPU time (all its threads), which
    # other processes on a shared machine distort far less than the wall clock
    seconds: dict[str, dict[str, dict[str, list[float]]]] = {
        clock: {f"{p:g}": {"seek": [], "full": []} for p in args.positions} for clock in ("wall", "cpu")}
    seeks: dict[str, int] = {}
    load_before = os.getloadavg()
    for rep in range(args.reps):
        for p in args.positions:
            got = {}
            for kind in ("seek", "full") if rep % 2 == 0 else ("full", "seek"):
                w0, c0 = time.perf_counter(), time.process_time()
                video = decode_video(str(path), plan_at(p), seek=(kind == "seek"))
                seconds["cpu"][f"{p:g}"][kind].append(time.process_time() - c0)
                seconds["wall"][f"{p:g}"][kind].append(time.perf_counter() - w0)
                got[kind] = video
            if not np.array_equal(got["seek"].frames, got["full"].frames) or \
                    not np.array_equal(got["seek"].indices, got["full"].indices):
                raise SystemExit(f"seeked clip at {p:g} differs from the one-pass clip")
            seeks[f"{p:g}"] = got["seek"].seeks
        print(f"[seek_decode] rep {rep + 1}/{args.reps} (wall/cpu s): " + ", ".join(
            f"{k}: seek {v['seek'][-1]:.3f}/{seconds['cpu'][k]['seek'][-1]:.3f}, full {v['full'][-1]:.3f}/"
            f"{seconds['cpu'][k]['full'][-1]:.3f}" for k, v in seconds["wall"].items()), flush=True)
    load_after = os.getloadavg()

    med = {clock: {k: {kind: statistics.median(v) for kind, v in d.items()} for k, d in per.items()}
           for clock, per in seconds.items()}
    first, last = f"{args.positions[0]:g}", f"{args.positions[-1]:g}"
    print("\n| clip position | pre-roll frames | seek: wall / CPU (median s) | one pass from frame 0: wall / CPU "
          "(median s) | speed-up (CPU) |")
    print("|---|---|---|---|---|")
    for k in med["wall"]:
        w, c = med["wall"][k], med["cpu"][k]
        print(f"| {float(k):.0%} | {preroll[k]} | {w['seek']:.3f} / {c['seek']:.3f} | "
              f"{w['full']:.3f} / {c['full']:.3f} | x{c['full'] / c['seek']:.1f} |")
    ratios = {clock: {kind: med[clock][last][kind] / med[clock][first][kind] for kind in ("seek", "full")}
              for clock in med}
    print(f"\nclip at {float(last):.0%} / clip at {float(first):.0%}, seek: x{ratios['cpu']['seek']:.2f} CPU time, "
          f"x{ratios['wall']['seek']:.2f} wall (target <= 2); one pass: x{ratios['cpu']['full']:.1f} CPU; "
          f"load avg {load_before[0]:.1f} -> {load_after[0]:.1f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({
            "video": path.name, "frames": n, "keyframes": len(keys), "clip_len": args.clip_len, "reps": args.reps,
            "seconds": seconds, "median_s": med, "seeks": seeks, "preroll_frames": preroll,
            "ratio_last_over_first": ratios, "load_avg": [load_before, load_after], "machine": platform.platform(),
            "cpus": os.cpu_count()}, indent=2))
    return 0 if ratios["cpu"]["seek"] <= 2.0 else 1

if __name__ == "__main__":
    sys.exit(main())
