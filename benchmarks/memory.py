"""Peak resident memory (RSS) of the driver and of each Ray process during feature extraction
(``python -m splavu_ray.features``) and online training (``python -m splavu_ray.train train.mode=online``),
at growing sizes of the built-in data: does memory stay bounded as the number of videos grows?

    timeout 3000 python benchmarks/memory.py                           # scales 1 2 4, both jobs
    timeout 3000 python benchmarks/memory.py --scales 1 4 --jobs features --out outputs/bench/memory.json

Each job runs as a user runs it (a subprocess of the CLI, tiny configs: the ``random:tiny`` backbone at
32 px, 8-frame clips), on the synthetic set with ``--base`` videos per split times the scale (privacy
images too; untrimmed videos stay at 1). The data is generated first, outside the measurement, into
``--work``; online training runs with the evaluation tasks privacy and action (both extract features of
their splits first: no feature store is kept from an earlier run). A sampler walks the job's process tree every ``--interval`` seconds with psutil (the local Ray
cluster the job starts is its child: GCS, raylet, and the workers the raylet forks) and keeps each
process's peak RSS, sorted into roles by the process title Ray sets (``ray::MapWorker(...)`` for the
Ray Data actors, ``ray::RayTrainWorker`` for training workers, ...). RSS counts the shared pages a
process touched (the object store is shared memory), so the per-role sums overlap and are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

COMMON = [
    "backbone.source=random:tiny", "backbone.image_size=32", "data.clip_len=8", "data.synthetic.resolution=32",
    "data.synthetic.num_frames=16", "data.num_static_frames=4", "data.num_eval_clips=2", "data.decode_workers=1",
    "data.decode_batch_size=4",
]
TRAIN = [
    "train.mode=online", "adapter.layers=1", "adapter.heads=4", "optim.batch_size=8", "optim.base_batch_size=8",
    "optim.epochs=2", "optim.head_epochs=1", "optim.warmup_epochs=0", "scaling.num_workers=1",
    "scaling.cpus_per_worker=1", "eval.privacy.attacker_epochs=5", "eval.action.probe_epochs=5",
    "eval.tasks=[privacy, action]",  # the other tasks need more labelled videos than the smallest scale has
]


def role(proc, driver_pid: int) -> str:
    """What a process of the job is, from its pid and the title Ray gives it."""
    if proc.pid == driver_pid:
        return "driver"
    try:
        cmd = " ".join(proc.cmdline()) or proc.name()
    except Exception:  # noqa: BLE001 - gone or inaccessible
        return "other"
    if cmd.startswith("ray::"):
        title = cmd.split()[0][len("ray::"):]
        if "MapWorker" in title or "Embedder" in title or "ClipDecoder" in title or "MapBatches" in title:
            return "Ray Data actor (decode / embed)"
        if "RayTrainWorker" in title or "TrainWorker" in title:
            return "Ray Train worker"
        if title.startswith("IDLE"):
            return "idle Ray worker"
        return "other Ray worker/actor"
    if "default_worker.py" in cmd:
        return "idle Ray worker"  # a worker before it sets its title
    if proc.name() in ("gcs_server", "raylet") or any(k in cmd for k in ("dashboard", "log_monitor", "monitor.py",
                                                                             "runtime_env", "ray/_private")):
        return "Ray system"
    return "other"


class Sampler(threading.Thread):
    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.stop = threading.Event()
        self.peak_by_pid: dict[int, int] = {}
        self.role_by_pid: dict[int, str] = {}
        self.title_by_pid: dict[int, str] = {}
        self.peak_role_sum: dict[str, int] = defaultdict(int)  # largest sum over a role's processes at one time
        self.peak_total = 0
        self.samples = 0

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            sums: dict[str, int] = defaultdict(int)
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except Exception:  # noqa: BLE001 - exited between listing and reading
                    continue
                if self.role_by_pid.get(p.pid) in (None, "idle Ray worker", "other"):
                    self.role_by_pid[p.pid] = role(p, self.pid)  # an idle worker later becomes an actor: keep that
                    try:
                        self.title_by_pid[p.pid] = (" ".join(p.cmdline()) or p.name())[:60]
                    except Exception:  # noqa: BLE001
                        pass
                self.peak_by_pid[p.pid] = max(self.peak_by_pid.get(p.pid, 0), rss)
                sums[self.role_by_pid[p.pid]] += rss
            for r, v in sums.items():
                self.peak_role_sum[r] = max(self.peak_role_sum[r], v)
            self.peak_total = max(self.peak_total, sum(sums.values()))
            self.samples += 1
            self.stop.wait(self.interval)

    def summary(self) -> dict:
        by_role: dict[str, list[int]] = defaultdict(list)
        for pid, peak in self.peak_by_pid.items():
            by_role[self.role_by_pid.get(pid, "other")].append(peak)
        return {
            "samples": self.samples, "peak_total_mib": self.peak_total / 2**20,
            "roles": {r: {"processes": len(v), "max_process_peak_mib": max(v) / 2**20,
                          "peak_sum_mib": self.peak_role_sum.get(r, 0) / 2**20} for r, v in sorted(by_role.items())},
            "processes": sorted(([self.role_by_pid.get(pid, "other"), self.title_by_pid.get(pid, "?"), peak / 2**20]
                                 for pid, peak in self.peak_by_pid.items()), key=lambda x: -x[2]),
        }


def sizes(base: int, scale: int) -> list[str]:
    n = base * scale
    half = max(4, n // 2)
    return [f"data.synthetic.videos_per_split={{pretrain: 1, train: {n}, val: {half}, test: {half}}}",
            f"data.synthetic.privacy_images={{train: {n}, test: {half}}}",
            "data.synthetic.untrimmed_videos={train: 1, test: 1}"]


def run_job(job: str, scale: int, args, cache: Path) -> dict:
    out = Path(args.work) / f"{job}-x{scale}"
    overrides = [*COMMON, *sizes(args.base, scale), f"data.cache_dir={cache}"]
    if job == "features":
        cmd = [sys.executable, "-m", "splavu_ray.features", "--out", str(out / "store"), *overrides]
    else:  # no feature store left from an earlier run: the evaluation's extraction is part of the run
        shutil.rmtree(cache / "features", ignore_errors=True)
        cmd = [sys.executable, "-m", "splavu_ray.train", *overrides, *TRAIN, f"run_name=mem-x{scale}",
               f"output_dir={out}"]
    # a loaded machine can take more than Ray's default minute to register its raylet
    env = {"RAY_raylet_start_wait_time_s": "600", **os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    log = open(Path(args.work) / f"{job}-x{scale}.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    sampler = Sampler(proc.pid, args.interval)
    sampler.start()
    try:
        rc = proc.wait(timeout=args.job_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "timeout"
    sampler.stop.set()
    sampler.join()
    log.close()
    res = {"job": job, "scale": scale, "rc": rc, "seconds": round(time.perf_counter() - t0, 1), **sampler.summary()}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--jobs", nargs="+", default=["features", "online"], choices=["features", "online"])
    ap.add_argument("--base", type=int, default=32, help="training videos (and privacy images) at scale 1")
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--job-timeout", type=float, default=1200)
    ap.add_argument("--work", default="outputs/bench/memory")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from splavu_ray.config import load_config
    from splavu_ray.data.sources import resolve_manifests

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for scale in args.scales:
        cache = work / f"cache-x{scale}"
        t0 = time.perf_counter()
        resolve_manifests(load_config(None, [*COMMON, *sizes(args.base, scale), f"data.cache_dir={cache}"]))
        print(f"[memory] data for scale {scale} ready in {time.perf_counter() - t0:.0f} s", flush=True)
        for job in args.jobs:
            load = os.getloadavg()[0]
            res = run_job(job, scale, args, cache)
            res["load_avg_before"] = load
            results.append(res)
            roles = ", ".join(f"{r}: {v['max_process_peak_mib']:.0f} MiB x{v['processes']}"
                              for r, v in res["roles"].items())
            print(f"[memory] {job} x{scale}: rc {res['rc']}, {res['seconds']} s; {roles}", flush=True)

    print("\n| job | scale (train videos) | driver peak RSS | largest Ray Data actor | largest Train worker | "
          "Ray system (sum) | whole tree (peak sum) | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    def mib(roles: dict, name: str, key: str = "max_process_peak_mib") -> str:
        return f"{roles[name][key]:.0f} MiB" if name in roles else "-"

    for r in results:
        g = r["roles"]
        print(f"| {r['job']} | x{r['scale']} ({args.base * r['scale']}) | {mib(g, 'driver')} | "
              f"{mib(g, 'Ray Data actor (decode / embed)')} | {mib(g, 'Ray Train worker')} | "
              f"{mib(g, 'Ray system', 'peak_sum_mib')} | {r['peak_total_mib']:.0f} MiB | {r['seconds']} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"base": args.base, "results": results}, indent=2))
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
