"""`python -m splavu_ray.train` end to end, as a user runs it: fresh, resumed, with a killed worker."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = [
    "data.synthetic.videos_per_split={pretrain: 2, train: 48, val: 16, test: 24}",
    "data.synthetic.privacy_images={train: 48, test: 24}",
    "data.synthetic.untrimmed_videos={train: 1, test: 1}",
    "data.num_static_frames=4", "data.num_eval_clips=2", "data.decode_workers=1",
    "adapter.layers=1", "optim.batch_size=16", "optim.base_batch_size=16", "optim.lr=1e-3",
    "optim.head_epochs=1", "optim.warmup_epochs=0", "eval.privacy.attacker_epochs=15",
    "eval.action.probe_epochs=15", "eval.tad.epochs=5", "eval.anomaly.epochs=5", "train.checkpoint_every=1",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def train_cmd(out: Path, cache: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "splavu_ray.train", *TINY, f"data.cache_dir={cache}", f"run_name={name}",
            f"output_dir={out / name}", *extra]


def run(cmd, timeout=600, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def test_bad_config_fails_before_any_work(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "splavu_ray.train", "adapter.layerz=2", f"output_dir={tmp_path}/x"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown config key 'adapter.layerz'" in proc.stderr
    assert not (tmp_path / "x").exists()
    proc = subprocess.run([sys.executable, "-m", "splavu_ray.train", "data.dataset=/nope.parquet",
                           "data.privacy_manifest=/nope2.parquet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_fresh_then_resumed_run_matches_uninterrupted(tmp_path, cache_dir):
    # enough epochs after the second checkpoint (~1 s each) for the interrupt below to land mid-run
    epochs = ["optim.epochs=8"]
    full = run(train_cmd(tmp_path, cache_dir, "full", *epochs))
    results = json.loads((tmp_path / "full" / "results.json").read_text())
    for key in ("cmap_raw", "cmap_anonymized", "cmap_chance"):
        assert 0 <= results["privacy"][key] <= 100
    for key in ("top1_raw", "top1_anonymized"):
        assert 0 <= results["action"][key] <= 100
    phases = results["run"]["phases_s"]
    assert set(phases) == {"features", "training", "evaluation"} and all(v > 0 for v in phases.values())
    assert sum(phases.values()) <= results["run"]["wall_time_s"] + 0.5
    timing = results["timing"]  # the same wall time, finer: Ray Train start-up, the worker's side, each task
    assert timing["total_s"] == results["run"]["wall_time_s"] and timing["features_s"] == phases["features"]
    assert timing["training"]["stepper"] == "deepspeed"  # two workers
    assert {"fit_s", "ray_train_start_stop_s", "worker_setup_s", "worker_epochs_s", "worker_checkpoints_reports_s",
            "export_s"} <= set(timing["training"])
    assert {"privacy", "action", "total"} <= set(timing["evaluation_s"])
    assert "privacy cMAP" in full.stdout and "val top-1" in full.stdout
    assert (tmp_path / "full" / "config.yaml").is_file() and (tmp_path / "full" / "deepspeed.json").is_file()
    assert (tmp_path / "full" / "best_adapter" / "adapter.safetensors").is_file()

    # Interrupt a second run after its second checkpoint, then run the same command again.
    cmd = train_cmd(tmp_path, cache_dir, "resumed", *epochs)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    store = tmp_path / "resumed" / "ray" / "resumed"
    deadline = time.time() + 400
    while time.time() < deadline and len(list(store.glob("checkpoint_*"))) < 2 and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "resumed" / "results.json").exists()
    again = run(cmd)
    assert "resumed from epoch" in again.stdout + again.stderr
    resumed = json.loads((tmp_path / "resumed" / "results.json").read_text())
    # Cached mode is deterministic per (seed, epoch) and DeepSpeed restores model + optimizer +
    # scheduler exactly: the resumed run ends where the uninterrupted one does (tolerance 1e-3 points).
    for section, key in (("privacy", "cmap_anonymized"), ("action", "top1_anonymized"), ("run", "best_val_top1")):
        assert resumed[section][key] == pytest.approx(results[section][key], abs=1e-3), (section, key)


def test_run_survives_a_killed_worker(tmp_path, cache_dir):
    import psutil

    cmd = train_cmd(tmp_path, cache_dir, "killed", "optim.epochs=12", "train.max_failures=2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    store = tmp_path / "killed" / "ray" / "killed"
    deadline, killed = time.time() + 400, None
    while time.time() < deadline and proc.poll() is None and killed is None:
        if list(store.glob("checkpoint_*")):
            workers = [p for p in psutil.process_iter(["cmdline"]) if "RayTrainWorker" in " ".join(p.info["cmdline"] or [])]
            if workers:
                killed = workers[-1].pid
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    assert killed, "no Ray Train worker found to kill"
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-5000:]
    results = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert results["run"]["best_epoch"] > 0
    assert not psutil.pid_exists(killed)


def test_rerun_with_a_changed_config_is_refused_not_resumed(tmp_path):
    from splavu_ray.config import ConfigError, load_config
    from splavu_ray.training.preflight import check_resume

    base = [f"output_dir={tmp_path}/run", "run_name=r1", "loss.w_b=1"]
    cfg = load_config(None, base)
    check_resume(cfg)  # nothing there yet
    cfg.save(tmp_path / "run" / "config.yaml")
    check_resume(cfg)  # a config but no checkpoints: a fresh start
    (tmp_path / "run" / "ray" / "r1").mkdir(parents=True)
    check_resume(cfg)  # same config: resumes
    check_resume(load_config(None, [*base, "eval.action.probe_epochs=3"]))  # evaluation settings may change
    with pytest.raises(ConfigError, match=r"run 'r1' .* \(loss changed"):
        check_resume(load_config(None, [*base[:2], "loss.w_b=5"]))
