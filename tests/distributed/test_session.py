"""Which cluster a command joins is explicit, and a cluster it cannot join fails at once with the fix."""

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from ray_jobs import stop_cluster

from splavu_ray.config import load_config
from splavu_ray.distributed.session import ClusterJoinError, check_reachable, join_failure, target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_address_comes_from_the_config_then_ray_address_else_a_fresh_local_ray(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert target(load_config(None, [])) == ("local", "neither ray.address nor RAY_ADDRESS is set")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert target(load_config(None, [])) == ("10.0.0.5:6379", "RAY_ADDRESS")
    assert target(load_config(None, ["ray.address=local"])) == ("local", "ray.address")
    assert target(load_config(None, ["ray.address=10.0.0.9:6379"])) == ("10.0.0.9:6379", "ray.address")


def test_an_unreachable_head_fails_at_once_naming_the_fix():
    port = free_port()  # nothing listens there
    t0 = time.time()
    with pytest.raises(ClusterJoinError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}.*ray.address=local"):
        check_reachable(f"127.0.0.1:{port}", "RAY_ADDRESS")
    assert time.time() - t0 < 5
    with pytest.raises(ClusterJoinError, match="is not HOST:PORT"):
        check_reachable("no-port-here", "ray.address")
    check_reachable("http://127.0.0.1:8265", "RAY_ADDRESS")  # job-server addresses are Ray's to check


def test_an_auth_failure_is_named_from_rays_cause_chain():
    try:
        try:
            raise RuntimeError("Authentication token is missing or incorrect")
        except RuntimeError as inner:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.5:6379") from inner
    except ConnectionError as exc:
        msg = join_failure("10.0.0.5:6379", "RAY_ADDRESS", exc)
    assert "RAY_AUTH_MODE=token" in msg and "RAY_AUTH_TOKEN" in msg and "10.0.0.5:6379" in msg


def test_a_ray_version_mismatch_names_both_versions_and_the_fix():
    """Ray's own version check (what ray.init runs against the cluster's metadata) raises; the message
    names the cluster's and this client's versions and where the cluster's pin lives."""
    import platform

    import ray
    from ray._private.utils import check_version_info

    try:
        check_version_info({"ray_version": "2.52.0", "python_version": "3.11.13"}, "this client")
    except RuntimeError as exc:
        msg = join_failure("10.0.0.5:6379", "RAY_ADDRESS", exc)
    assert "Ray 2.52.0 and Python 3.11.13" in msg, msg
    assert f"Ray {ray.__version__} and Python {platform.python_version()}" in msg
    assert "cluster/RAY_VERSION" in msg and "ray job submit" in msg


def run_train(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "splavu_ray.train", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_train_cli_says_which_cluster_and_fails_without_a_traceback():
    port = free_port()
    res = run_train(env={"RAY_ADDRESS": f"127.0.0.1:{port}"})
    assert res.returncode == 2
    assert res.stdout.splitlines()[0] == f"[splavu] Ray: joining the cluster at 127.0.0.1:{port} (from RAY_ADDRESS)"
    assert "cannot reach the Ray cluster" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_a_cluster_with_another_token_is_refused_with_the_fix():
    port, dash = free_port(), free_port()
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's unix sockets live below it
    head_env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    head_env.pop("RAY_ADDRESS", None)
    start = ["ray", "start", "--head", f"--port={port}", "--num-cpus=1", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={dash}", f"--temp-dir={temp}", "--disable-usage-stats"]
    subprocess.run(start, check=True, capture_output=True, env=head_env, timeout=120)
    try:
        t0 = time.time()
        res = run_train(f"ray.address=127.0.0.1:{port}",
                        env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)})
        assert res.returncode == 2, res.stderr[-2000:]
        assert "cannot join the Ray cluster" in res.stderr and "RAY_AUTH_TOKEN" in res.stderr
        assert "Traceback" not in res.stderr and time.time() - t0 < 90
    finally:
        stop_cluster(temp)  # only this head: `ray stop` would stop every Ray on the machine


def test_sweeps_need_the_driver_resource_and_a_fresh_local_ray_has_it(monkeypatch):
    """Sweep trial drivers hold one splavu_driver: a joined cluster without it is refused with the fix (the
    head's resources in the cluster yaml); connect() advertises it on a Ray it starts itself."""
    import ray

    from splavu_ray.distributed import session

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 0.0, "GPU": 4.0})
    with pytest.raises(ClusterJoinError, match=r"no 'splavu_driver'.*cluster yaml.*\"splavu_driver\": 8"):
        session.check_driver_slots()
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 0.0, session.DRIVER_RESOURCE: 8.0})
    session.check_driver_slots()
    # a fresh local Ray: ray.init is asked for the resource (Ray itself is not started here)
    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    session.connect(load_config(None, ["ray.address=local"]))
    assert seen["address"] == "local" and seen["resources"] == {session.DRIVER_RESOURCE: session.LOCAL_DRIVER_SLOTS}
