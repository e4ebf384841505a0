"""Helpers for tests that start Ray clusters with `ray start` / `ray up` and submit jobs to them, token auth on.

The `ray up` test (tests/test_cluster.py) submits the training job users submit; the shared-nothing harness
(tests/shared_nothing.py), the session and sweep tests reuse the ports, token and clean-up helpers here.
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_train_cli import TINY  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
# What docs/cluster.md tells users to exclude from the working-dir upload (capped near 100 MiB).
EXCLUDES = [".git", "outputs", "*.egg-info", ".pytest_cache", "__pycache__", ".benchmarks", ".venv"]


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (sockets held open together so the OS cannot repeat one). They
    come from the ephemeral range, outside Ray's worker-port range (10002-19999)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def token_env(folder: Path) -> dict[str, str]:
    """Client/cluster environment with token auth ON and a token of this test's own (never the
    user's ~/.ray/auth_token)."""
    token = folder / "ray_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(key, None)
    return env


def refresh_auth() -> None:
    """Make this process re-read RAY_AUTH_MODE and the token (Ray caches both on first use, and
    earlier tests in this process may have used another token); what Ray's own setup code calls."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def head_flags(gcs: int, dashboard: int, agent: int, client: int) -> list[str]:
    """`ray start --head` flags that keep a test cluster on loopback and off every default port
    (another Ray on this machine may hold 6379, 8265, 52365 or 10001)."""
    return ["--node-ip-address=127.0.0.1", f"--port={gcs}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={agent}",
            f"--ray-client-server-port={client}", "--disable-usage-stats"]


def job_cache(tmp_path_factory) -> Path:
    """Data cache shared by this session's submitted jobs: the second job reuses the generated
    videos and the feature store instead of making them again."""
    path = tmp_path_factory.getbasetemp() / "job-cache"
    path.mkdir(exist_ok=True)
    return path


def submit_training(dashboard: int, out: Path, cache: Path, env: dict, name: str,
                    timeout: float = 900) -> subprocess.CompletedProcess:
    """The documented submit command with a tiny config; retried only while the head's job agent
    has not registered yet (the submission is refused before anything runs)."""
    # No env_vars: the entry point sets its workers' (DS_ACCELERATOR, ...) itself, and Ray refuses a
    # key set both by the job and by the driver's ray.init.
    runtime_env = {"excludes": EXCLUDES}
    cmd = [RAY, "job", "submit", f"--address=http://127.0.0.1:{dashboard}", f"--working-dir={REPO}",
           f"--runtime-env-json={json.dumps(runtime_env)}", "--",
           "python", "-m", "splavu_ray.train", *TINY, "optim.epochs=2", "scaling.num_workers=1",
           f"data.cache_dir={cache}", f"run_name={name}", f"output_dir={out}"]
    deadline = time.time() + 120
    while True:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode == 0 or "No available agent" not in proc.stderr or time.time() > deadline:
            return proc
        time.sleep(2)


def check_results(proc: subprocess.CompletedProcess, out: Path) -> dict:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "succeeded" in proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert {"cmap_raw", "cmap_anonymized", "cmap_chance"} <= set(results["privacy"])
    assert {"top1_raw", "top1_anonymized"} <= set(results["action"])
    assert (out / "best_adapter" / "adapter.safetensors").is_file()
    # The job ran from the uploaded working dir (a copy), not from this checkout.
    assert "Uploading package gcs://" in proc.stdout + proc.stderr
    return results


def stop_cluster(temp: str) -> None:
    """Stop only this test's cluster, found by its own temp dir (`ray stop` would stop every Ray
    on the machine, other people's included)."""
    import psutil

    procs = [p for p in psutil.process_iter(["cmdline"]) if temp in " ".join(p.info["cmdline"] or [])]
    for p in procs:
        p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        p.kill()
    shutil.rmtree(temp, ignore_errors=True)
