"""`ray job submit -- python -m splavu_ray.train` against a local `ray start --head`, token auth on."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_train_cli import TINY  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_job_submit_runs_the_training_entry_point(tmp_path):
    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    ray = str(Path(sys.executable).with_name("ray"))
    gcs, dash = free_port(), free_port()
    temp = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray's unix sockets live below it
    subprocess.run([ray, "start", "--head", f"--port={gcs}", "--num-cpus=2", "--dashboard-host=127.0.0.1",
                    f"--temp-dir={temp}",
                    f"--dashboard-port={dash}", "--disable-usage-stats"], check=True, env=env,
                   capture_output=True, timeout=180)
    try:
        out = tmp_path / "job-out"
        runtime_env = {"excludes": [".git", "outputs", "*.egg-info", ".pytest_cache", "__pycache__"],
                       "env_vars": {"DS_ACCELERATOR": "cpu"}}
        proc = subprocess.run(
            [ray, "job", "submit", f"--address=http://127.0.0.1:{dash}", f"--working-dir={REPO}",
             f"--runtime-env-json={json.dumps(runtime_env)}", "--",
             "python", "-m", "splavu_ray.train", *TINY, "optim.epochs=2", f"data.cache_dir={tmp_path / 'cache'}",
             "run_name=job", f"output_dir={out}"],
            env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        assert "succeeded" in proc.stdout
        results = json.loads((out / "results.json").read_text())
        assert {"cmap_raw", "cmap_anonymized", "cmap_chance"} <= set(results["privacy"])
        assert {"top1_raw", "top1_anonymized"} <= set(results["action"])
    finally:
        stop_cluster(temp)


def stop_cluster(temp: str) -> None:
    """Stop only this test's cluster (`ray stop` would stop every Ray on the machine)."""
    import psutil

    procs = [p for p in psutil.process_iter(["cmdline"]) if temp in " ".join(p.info["cmdline"] or [])]
    for p in procs:
        p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        p.kill()
    shutil.rmtree(temp, ignore_errors=True)
