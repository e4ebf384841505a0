"""A cluster on this machine whose nodes share nothing but an S3-compatible object store.

- moto's S3 server on 127.0.0.1 (tests/s3.py), every node given its address (``AWS_ENDPOINT_URL``);
- a Ray head, ``ray start --head --num-cpus=0 --resources '{"splavu_driver": 4}'`` with token auth, whose
  local files (Ray's temp dir with the jobs' working dirs, HOME with the data cache and the staging folder
  of s3:// output dirs) all live under ONE folder, ``head_dir``;
- worker nodes, ``ray start --address ... --block``, each inside a private mount namespace
  (``unshare --mount --propagation private``) where a tmpfs is mounted over ``head_dir``: a worker sees
  none of the head's files, its own HOME and Ray temp dir, and the bucket.

Everything is stopped by its own temp folder (never ``ray stop``, which would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ray_jobs import EXCLUDES, REPO, free_ports, head_flags  # noqa: E402
from s3 import environment  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))
DRIVER_RESOURCE = {"splavu_driver": 4}


def namespace_problem() -> str | None:
    """Why private mount namespaces cannot be made here (None: they can): unshare + tmpfs need root."""
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                f"mount -t tmpfs tmpfs {shlex.quote(tmp)}"], capture_output=True, text=True)
    if probe.returncode:
        return f"cannot mount a tmpfs in a private mount namespace here: {probe.stderr.strip()[:200]}"
    return None


@dataclass
class Cluster:
    base: Path  # short (Ray's unix sockets live below it)
    endpoint: str  # the S3 server
    env: dict[str, str]  # token auth + S3: what a client (and every node) runs with
    gcs: int = 0
    dashboard: int = 0
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def head_dir(self) -> Path:
        """Every file the head keeps locally; hidden from the workers."""
        return self.base / "h"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard}"

    def node_env(self, name: str) -> dict[str, str]:
        home = self.base / name / "home" if name != "h" else self.head_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        # a node registers within 60 s by default; on a loaded machine (CI, shared sandboxes) give it longer
        # and no Ray OOM killer: on a shared machine other people's processes fill the memory, and Ray would
        # kill this cluster's workers for it (the kernel's OOM killer still guards the machine)
        return {"RAY_raylet_start_wait_time_s": "300", "RAY_memory_monitor_refresh_ms": "0", **self.env,
                "HOME": str(home)}

    # -- nodes ---------------------------------------------------------------------------------------------
    def start_head(self) -> None:
        self.gcs, self.dashboard, agent, client = free_ports(4)
        proc = subprocess.run([RAY, "start", "--head", "--num-cpus=0", f"--resources={json.dumps(DRIVER_RESOURCE)}",
                               f"--temp-dir={self.head_dir / 'r'}", *head_flags(self.gcs, self.dashboard, agent, client)],
                              env=self.node_env("h"), capture_output=True, text=True, timeout=300)
        if proc.returncode:
            raise RuntimeError(f"ray start --head failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")

    def worker_command(self, name: str, num_cpus: int) -> list[str]:
        """`ray start --address ... --block` in a mount namespace of its own, the head's folder hidden."""
        (agent,) = free_ports(1)
        ray_start = [RAY, "start", f"--address=127.0.0.1:{self.gcs}", "--block", f"--num-cpus={num_cpus}",
                     "--node-ip-address=127.0.0.1", f"--temp-dir={self.base / name / 'r'}",
                     f"--dashboard-agent-listen-port={agent}", "--disable-usage-stats"]
        script = f"mount -t tmpfs tmpfs {shlex.quote(str(self.head_dir))} && exec {shlex.join(ray_start)}"
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]

    def add_worker(self, name: str, num_cpus: int = 2, timeout: float = 600) -> None:
        before = len(self.alive_nodes())
        log = open(self.base / f"{name}.log", "w")
        self.workers[name] = subprocess.Popen(self.worker_command(name, num_cpus), env=self.node_env(name),
                                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while len(self.alive_nodes()) <= before:
            if self.workers[name].poll() is not None or time.time() > deadline:
                raise RuntimeError(f"worker {name} did not join:\n{(self.base / f'{name}.log').read_text()[-3000:]}")
            time.sleep(2)

    def alive_nodes(self) -> list[dict]:
        proc = subprocess.run([RAY, "list", "nodes", f"--address={self.dashboard_url}", "--filter", "state=ALIVE",
                               "--format=json"], env=self.env, capture_output=True, text=True, timeout=120)
        return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []

    def kill_worker(self, name: str) -> None:
        """A node lost at once (a spot reclaim): SIGKILL to its raylet and every process of it."""
        kill_matching(str(self.base / name / "r"), hard=True)
        self.workers.pop(name).wait(timeout=60)

    def stop(self) -> None:
        for name in list(self.workers):
            kill_matching(str(self.base / name / "r"))
            self.workers.pop(name).wait(timeout=60)
        kill_matching(str(self.head_dir / "r"))
        shutil.rmtree(self.base, ignore_errors=True)

    # -- jobs ------------------------------------------------------------------------------------------------
    def job_command(self, *entrypoint: str, wait: bool = True) -> list[str]:
        """The documented `ray job submit` (this checkout as the working dir) against this cluster."""
        return [RAY, "job", "submit", f"--address={self.dashboard_url}", f"--working-dir={REPO}",
                f"--runtime-env-json={json.dumps({'excludes': EXCLUDES})}", *([] if wait else ["--no-wait"]),
                "--", *entrypoint]

    def submit(self, *entrypoint: str, wait: bool = True, timeout: float = 1500) -> subprocess.CompletedProcess:
        """Submit; retried only while the head's job agent has not registered yet."""
        deadline = time.time() + 120
        while True:
            proc = subprocess.run(self.job_command(*entrypoint, wait=wait), env=self.env, capture_output=True,
                                  text=True, timeout=timeout)
            if proc.returncode == 0 or "No available agent" not in proc.stderr or time.time() > deadline:
                return proc
            time.sleep(2)

    def job_status(self, job_id: str) -> str:
        proc = subprocess.run([RAY, "job", "status", f"--address={self.dashboard_url}", job_id], env=self.env,
                              capture_output=True, text=True, timeout=120)
        # "Status for job ...: RUNNING" while it runs, "Job '...' succeeded" (or failed, stopped) at the end
        said = (proc.stdout + proc.stderr).lower()
        for state in ("SUCCEEDED", "FAILED", "STOPPED", "RUNNING", "PENDING"):
            if state.lower() in said:
                return state
        return "UNKNOWN"

    def job_logs(self, job_id: str) -> str:
        return subprocess.run([RAY, "job", "logs", f"--address={self.dashboard_url}", job_id], env=self.env,
                              capture_output=True, text=True, timeout=120).stdout

    def python(self, code: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """A Python driver on the head's side (joins through RAY_ADDRESS, as the entry points do)."""
        return subprocess.run([sys.executable, "-c", code, *args], env={**self.node_env("h"), "RAY_ADDRESS":
                              f"127.0.0.1:{self.gcs}"}, capture_output=True, text=True, timeout=timeout)


def kill_matching(marker: str, hard: bool = False) -> None:
    """Stop the processes whose command line names ``marker`` (one node's temp dir), and only those."""
    import psutil

    procs = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])
             and p.pid != os.getpid()]
    for p in procs:
        try:
            p.kill() if hard else p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        p.kill()


def start_cluster(endpoint: str, token_env: dict[str, str], workers: int = 2, num_cpus: int = 2) -> Cluster:
    base = Path(tempfile.mkdtemp(prefix="sn", dir="/tmp"))
    cluster = Cluster(base, endpoint, {**token_env, **environment(endpoint)})
    cluster.env.pop("AWS_PROFILE", None)
    cluster.head_dir.mkdir()
    try:
        cluster.start_head()
        for i in range(1, workers + 1):
            cluster.add_worker(f"w{i}", num_cpus)
    except BaseException:
        cluster.stop()
        raise
    return cluster


# Run on the cluster by Cluster.python: one task pinned to each worker node looks for a file the head wrote
# in its own folder and reads an object from the bucket.
ISOLATION_PROBE = """
import json, os, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

path, uri = sys.argv[1], sys.argv[2]

@ray.remote(num_cpus=1)
def look(path, uri):
    import pyarrow.fs as pafs
    fs, key = pafs.FileSystem.from_uri(uri)
    with fs.open_input_stream(key) as f:
        body = f.read().decode()
    return {"node": ray.get_runtime_context().get_node_id(), "sees_head_file": os.path.exists(path),
            "s3": body, "home": os.environ.get("HOME")}

ray.init()
workers = [n["NodeID"] for n in ray.nodes() if n["Alive"] and "splavu_driver" not in n["Resources"]]
refs = [look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(path, uri)
        for n in workers]
print("PROBE " + json.dumps({"workers": workers, "seen": ray.get(refs), "driver_sees": os.path.exists(path)}))
"""
