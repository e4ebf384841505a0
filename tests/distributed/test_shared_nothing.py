"""A cluster whose nodes share nothing but an S3-compatible object store (tests/shared_nothing.py): a Ray head
with no CPUs (token auth on) and two worker nodes in private mount namespaces that hide the head's folder.

What it proves: the workers cannot see the head's files but do see the bucket; through `ray job submit`,
training in cached and in online mode, with the built-in data, the feature store, the checkpoints and the
run folder all under s3://, finishes with results.json in the bucket; `python -m splavu_ray.evaluate
adapter=s3://...` scores the adapter from the bucket; a sweep keeps its trials and outputs there; and a run whose worker node is killed mid-training
finishes from its S3 checkpoints on a replacement node.
"""

import json
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ray_jobs import token_env  # noqa: E402
from s3 import client, s3_server  # noqa: E402
from shared_nothing import ISOLATION_PROBE, namespace_problem, start_cluster  # noqa: E402
from test_train_cli import TINY  # noqa: E402

# About 5 minutes on 2 cores (one cluster for the module); skips where mount namespaces cannot be made.
pytestmark = pytest.mark.slow
BUCKET = "splavu"
CACHE = f"s3://{BUCKET}/cache"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if reason := namespace_problem():
        pytest.skip(f"needs private mount namespaces to hide the head's files from its workers: {reason}")
    with s3_server() as endpoint:
        client(endpoint).create_bucket(Bucket=BUCKET)
        c = start_cluster(endpoint, token_env(tmp_path_factory.mktemp("token")))
        try:
            yield c
        finally:
            c.stop()


def s3_text(cluster, key: str) -> str:
    return client(cluster.endpoint).get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def s3_keys(cluster, prefix: str) -> list[str]:
    pages = client(cluster.endpoint).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def train_args(name: str, *extra: str) -> list[str]:
    """The training entry point with a tiny config, every artifact under s3://."""
    return ["python", "-m", "splavu_ray.train", *TINY, f"data.cache_dir={CACHE}", f"run_name={name}",
            f"output_dir=s3://{BUCKET}/runs/{name}", *extra]


def check_run(cluster, proc, name: str) -> dict:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "succeeded" in out, out[-6000:]
    results = json.loads(s3_text(cluster, f"runs/{name}/results.json"))
    assert {"cmap_raw", "cmap_anonymized"} <= set(results["privacy"])
    assert {"top1_raw", "top1_anonymized"} <= set(results["action"])
    keys = s3_keys(cluster, f"runs/{name}/")
    for needed in ("best_adapter/adapter.safetensors", "config.yaml", "report.html", "results.md"):
        assert f"runs/{name}/{needed}" in keys, keys
    assert any(k.startswith(f"runs/{name}/ray/{name}/checkpoint_") for k in keys), keys
    assert results["run"]["feature_store"].startswith(f"{CACHE}/features/")
    return results


def test_workers_see_the_bucket_and_none_of_the_heads_files(cluster):
    marker = cluster.head_dir / "home" / "written-by-the-head.txt"
    marker.write_text("head only")
    client(cluster.endpoint).put_object(Bucket=BUCKET, Key="probe.txt", Body=b"from the bucket")
    proc = cluster.python(ISOLATION_PROBE, str(marker), f"s3://{BUCKET}/probe.txt")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    probe = json.loads(proc.stdout.split("PROBE ", 1)[1].splitlines()[0])
    assert probe["driver_sees"] and len(probe["workers"]) == 2
    assert sorted(s["node"] for s in probe["seen"]) == sorted(probe["workers"])
    for seen in probe["seen"]:
        assert not seen["sees_head_file"] and seen["s3"] == "from the bucket", seen
        assert not seen["home"].startswith(str(cluster.head_dir))


def test_cached_training_then_evaluation_from_s3(cluster):
    check_run(cluster, cluster.submit(*train_args("cached", "optim.epochs=2", "scaling.num_workers=2")), "cached")
    # The built-in data went to the bucket with s3:// URIs (no local folder named 's3:' anywhere on the head).
    assert any(k.startswith("cache/synthetic-") and k.endswith("/manifest.parquet") for k in s3_keys(cluster, "cache/"))
    assert not list(cluster.head_dir.rglob("s3:"))

    proc = cluster.submit("python", "-m", "splavu_ray.evaluate", f"adapter=s3://{BUCKET}/runs/cached/best_adapter",
                          *TINY, f"data.cache_dir={CACHE}", f"output_dir=s3://{BUCKET}/runs/cached-eval")
    assert proc.returncode == 0 and "succeeded" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-6000:]
    results = json.loads(s3_text(cluster, "runs/cached-eval/results.json"))
    assert results["run"]["adapter"] == f"s3://{BUCKET}/runs/cached/best_adapter"
    assert {"cmap_raw", "cmap_anonymized"} <= set(results["privacy"])


def test_online_training_decodes_videos_from_s3(cluster):
    proc = cluster.submit(*train_args("online", "train.mode=online", "optim.epochs=2", "scaling.num_workers=1"))
    check_run(cluster, proc, "online")


def test_a_sweep_with_every_file_in_the_bucket(cluster):
    """`ray job submit -- python -m splavu_ray.sweep`: trial drivers on the head (splavu_driver), their Train
    workers and evaluation tasks on the workers, the trials' files and the sweep's outputs under s3://."""
    out = f"s3://{BUCKET}/sweeps/quick"
    proc = cluster.submit("python", "-m", "splavu_ray.sweep", "sweeps/quick.yaml", "n_trials=2", f"output_dir={out}",
                          "sampler.population_size=2", "base.optim.epochs=2", *[f"base.{o}" for o in TINY],
                          f"base.data.cache_dir={CACHE}")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "succeeded" in log, log[-6000:]
    assert f"under {out}/trials" in log and f"published to {out}" in log, log[-6000:]
    summary = json.loads(s3_text(cluster, "sweeps/quick/summary.json"))
    assert summary["n_trials"] == 2 and summary["pareto_trials"]
    keys = s3_keys(cluster, "sweeps/quick/")
    for name in ("optuna.db", "trials.csv", "pareto.csv", "pareto.png", "report.html"):
        assert f"sweeps/quick/{name}" in keys, keys
    trial_ids = {k.split("/")[3] for k in keys if k.startswith("sweeps/quick/trials/") and k.endswith("/record.json")}
    assert len(trial_ids) == 2
    for tid in trial_ids:
        record = json.loads(s3_text(cluster, f"sweeps/quick/trials/{tid}/record.json"))
        assert record["trial_dir"] == f"{out}/trials/{tid}"
        assert f"sweeps/quick/trials/{tid}/best_adapter/adapter.safetensors" in keys
        assert any(k.startswith(f"sweeps/quick/trials/{tid}/ray/") for k in keys)  # its Ray Train checkpoints
        assert record["timing"]["evaluation_task"]["ray_task"]
    assert any(k.startswith("sweeps/quick/pareto_adapters/") for k in keys)


def test_a_worker_node_killed_mid_training_resumes_from_s3_checkpoints(cluster):
    # One training worker per node (2 CPUs each), so the kill takes one of them down; 24 epochs (~60 s) so
    # the kill lands while it trains, not after.
    proc = cluster.submit(*train_args("kill", "optim.epochs=24", "scaling.num_workers=2", "scaling.cpus_per_worker=2"),
                          wait=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    job = re.search(r"raysubmit_\w+", proc.stdout + proc.stderr).group(0)
    deadline = time.time() + 900
    while not any("/checkpoint_" in k for k in s3_keys(cluster, "runs/kill/ray/kill/")):
        assert cluster.job_status(job) in ("PENDING", "RUNNING"), cluster.job_logs(job)[-6000:]
        assert time.time() < deadline, "no checkpoint reached the bucket"
        time.sleep(1)
    cluster.kill_worker("w1")
    cluster.add_worker("w3")  # the replacement node (a new spot instance)
    while (state := cluster.job_status(job)) in ("PENDING", "RUNNING", "UNKNOWN"):
        assert time.time() < deadline, cluster.job_logs(job)[-6000:]
        time.sleep(3)
    logs = cluster.job_logs(job)
    assert state == "SUCCEEDED", logs[-6000:]
    assert "resumed from epoch" in logs, logs[-6000:]
    results = json.loads(s3_text(cluster, "runs/kill/results.json"))
    assert results["run"]["best_epoch"] >= 1
