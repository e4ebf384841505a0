"""The sweep's durable Optuna study opens in optuna-dashboard, started on loopback the way docs/sweeps.md shows."""

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from test_tune import write_sweep  # this folder is on sys.path (default import mode)

from splavu_ray.distributed.tune import open_study
from splavu_ray.search.spec import fingerprint, load_sweep


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def test_sweep_study_opens_in_optuna_dashboard(tmp_path):
    exe = shutil.which("optuna-dashboard") or str(Path(sys.executable).with_name("optuna-dashboard"))
    if not Path(exe).exists():
        pytest.skip("optuna-dashboard is not installed (pip install -e '.[test]' installs it)")
    spec, _ = load_sweep(write_sweep(tmp_path))
    spec.output_path.mkdir(parents=True)
    study, _ = open_study(spec, fingerprint(spec))  # the study exactly as `python -m splavu_ray.sweep` makes it
    dists = {"loss.w_b": optuna.distributions.FloatDistribution(0.1, 10.0, log=True)}
    study.add_trial(optuna.trial.create_trial(params={"loss.w_b": 2.0}, distributions=dists, values=[60.0, 70.0]))
    port = free_port()
    proc = subprocess.Popen([exe, spec.storage_url, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, studies = time.time() + 60, None
        while time.time() < deadline and studies is None:
            try:
                studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-2000:]
                time.sleep(0.5)
        assert studies is not None, "optuna-dashboard did not answer within 60 s"
        [entry] = [s for s in studies if s["study_name"] == spec.name]
        assert len(entry["directions"]) == 2
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{entry['study_id']}?after=0")
        assert [(t["state"], t["values"]) for t in detail["trials"]] == [("Complete", [60.0, 70.0])]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
