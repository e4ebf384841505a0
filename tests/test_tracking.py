"""Experiment tracking (splavu_ray.tracking) against a real `mlflow server` on 127.0.0.1, no mocks: names and
values, the config section, the client wrapper, a training run and a sweep followed end to end."""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from splavu_ray.config import ConfigError, load_config
from splavu_ray.run_folder import RunFolder
from splavu_ray.tracking import EpochLogger, MlflowTracker, TrackingError, flatten, mlflow_name, numeric, params

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` (SQLite backend, artifacts served through the server) on a free port; its URI."""
    pytest.importorskip("mlflow")  # the `test` extra installs it; the package itself runs without it
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe) if exe.exists() else "mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
           "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # No background job runner: it would start seven huey consumer processes on a 2-core machine.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.25)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def artifact_paths(c, run_id, path=None) -> set[str]:
    out = set()
    for f in c.list_artifacts(run_id, path):
        out |= artifact_paths(c, run_id, f.path) if f.is_dir else {f.path}
    return out


def tb_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of TensorBoard event files (TFRecord framing: length, crc, Event proto, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, list] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


# ------------------------------------------------------------------------------------------------
# Names, values and the config section (no server)
# ------------------------------------------------------------------------------------------------


def test_flatten_numeric_and_params():
    tree = {"privacy": {"cmap_raw": 80, "cmap_anonymized": 61.5, "attackers": ["mlp"], "ok": True, "note": "x",
                        "per_class": {"a@1": 2.0}}, "run": {"best_epoch": 3, "backbone": None}, "empty": {}}
    assert flatten(tree)["privacy.per_class.a@1"] == 2.0 and flatten(tree)["empty"] == {}
    assert numeric(tree) == {"privacy.cmap_raw": 80.0, "privacy.cmap_anonymized": 61.5,
                             "privacy.per_class.a_1": 2.0, "run.best_epoch": 3.0}
    assert mlflow_name("top1 (%)/x-y.z_w") == "top1 ___/x-y.z_w"
    p = params({"optim": {"lr": 1e-3, "schedule": "cosine"}, "eval": {"tasks": None, "bank_lrs": [0.1, 1]},
                "long": "v" * 7000})
    assert p["optim.lr"] == "0.001" and p["optim.schedule"] == "cosine"
    assert p["eval.tasks"] == "null" and p["eval.bank_lrs"] == "[0.1, 1]" and len(p["long"]) == 6000


def test_tracking_section_is_off_by_default_and_checked():
    cfg = load_config()
    assert (cfg.tracking.mlflow_uri, cfg.tracking.experiment, cfg.tracking.tensorboard) == (None, "splavu_ray", False)
    assert MlflowTracker.of(cfg) is None
    ok = load_config(None, ["tracking.mlflow_uri=http://127.0.0.1:5000", "tracking.experiment=ablations"])
    assert ok.tracking.mlflow_uri == "http://127.0.0.1:5000" and list(ok.to_dict())[-1] == "tracking"
    for override, message in [("tracking.mlflow_uri=localhost:5000", "'tracking.mlflow_uri': Value error, must be"),
                              ("tracking.mlflow_uri=http://", "'tracking.mlflow_uri': Value error, names no host"),
                              ("tracking.mlflow_uri=sqlite:///rel.db", "needs an absolute path"),
                              ("tracking.experiment=' x'", "'tracking.experiment'"),
                              ("tracking.tensorboard=maybe", "'tracking.tensorboard'"),
                              ("tracking.uri=http://h", "unknown config key 'tracking.uri'; allowed here: "
                                                        "experiment, mlflow_uri, tensorboard")]:
        with pytest.raises(ConfigError) as err:
            load_config(None, [override])
        assert message in str(err.value), (override, str(err.value))


def test_unreachable_server_fails_before_any_work(tmp_path):
    port = free_port()  # nothing listens there
    t0 = time.time()
    with pytest.raises(TrackingError, match=r"'tracking.mlflow_uri': the MLflow tracking server at "
                                            rf"http://127.0.0.1:{port} does not answer"):
        MlflowTracker.of(load_config(None, [f"tracking.mlflow_uri=http://127.0.0.1:{port}"]))
    assert time.time() - t0 < 15  # no minutes of client retries
    # through the CLI: exit 2 with the message, before Ray, features or the output folder
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "splavu_ray.train", f"output_dir={out}",
                           f"tracking.mlflow_uri=http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "does not answer" in proc.stderr and "tracking.mlflow_uri" in proc.stderr
    assert not out.exists()


def test_the_package_runs_without_mlflow(tmp_path):
    """MLflow is an optional extra: with it absent every module imports, the epoch logger without a run is a
    no-op, and turning tracking on names the extra to install."""
    code = f"""
import importlib, pkgutil, sys
sys.modules["mlflow"] = None  # import mlflow -> ImportError
import splavu_ray
for m in pkgutil.walk_packages(splavu_ray.__path__, "splavu_ray."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
from splavu_ray.config import load_config
from splavu_ray.tracking import EpochLogger, MlflowTracker, TrackingError
EpochLogger(None, None).log({{"train_loss": 1.0}}, 1)
assert MlflowTracker.of(load_config()) is None
try:
    MlflowTracker.of(load_config(None, ["tracking.mlflow_uri=sqlite:///{tmp_path}/m.db"]))
except TrackingError as exc:
    print(exc)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MLflow is not installed: pip install 'splavu_ray[tracking]'" in proc.stdout


def test_tensorboard_event_files(tmp_path):
    log = EpochLogger(None, None, str(tmp_path / "tb"))
    for epoch, loss in ((1, 2.0), (2, 1.5)):
        log.log({"epoch": epoch, "phase": "joint", "train_loss": loss, "val_top1": 10.0 * epoch}, epoch)
    log.close()
    scalars = tb_scalars(tmp_path / "tb")
    assert scalars["train_loss"] == [(1, 2.0), (2, 1.5)] and scalars["val_top1"] == [(1, 10.0), (2, 20.0)]
    assert "epoch" not in scalars and "phase" not in scalars


# ------------------------------------------------------------------------------------------------
# The client wrapper against the server
# ------------------------------------------------------------------------------------------------


def test_run_params_epochs_results_artifacts_and_resume(mlflow_server, tmp_path):
    cfg = load_config(None, [f"tracking.mlflow_uri={mlflow_server}", "tracking.experiment=unit", "run_name=unit-run",
                             f"output_dir={tmp_path / 'run'}", "optim.epochs=3"])
    tracker = MlflowTracker.of(cfg)
    again = MlflowTracker.of(cfg)  # the experiment is created once, then found
    assert again.experiment_id == tracker.experiment_id
    run_id = tracker.start_run(cfg.run_name, cfg.to_dict(), tags={"output_dir": str(cfg.output_path)})
    for epoch in (1, 2, 3):
        tracker.log_epoch(run_id, {"epoch": epoch, "phase": "joint", "train_loss": 1.0 / epoch, "val_top1": 50.0}, epoch)

    folder = RunFolder.of(cfg).make()
    (folder.adapter() / "adapter.safetensors").parent.mkdir()
    (folder.adapter() / "adapter.safetensors").write_bytes(b"weights")
    (folder.adapter() / "meta.json").write_text("{}")
    cfg.save(folder.config)
    results = {"privacy": {"cmap_anonymized": 61.0, "cmap_raw": 80.0}, "action": {"top1_anonymized": 70.0},
               "run": {"run_name": "unit-run", "best_epoch": 2}}
    folder.results_json.write_text(json.dumps(results))
    folder.results_table.write_text("| a |\n")
    (folder.root / "privacy.png").write_bytes(b"\x89PNG")
    from splavu_ray.tracking import run_artifacts

    assert tracker.finish(run_id, results, run_artifacts(folder))

    c = client(mlflow_server)
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "unit-run"
    assert run.data.params["optim.epochs"] == "3" and run.data.params["tracking.experiment"] == "unit"
    assert run.data.tags["run_name"] == "unit-run" and run.data.tags["splavu_ray.version"]
    assert [(m.step, m.value) for m in c.get_metric_history(run_id, "train_loss")] == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert "phase" not in run.data.metrics and "epoch" not in run.data.metrics
    assert run.data.metrics["privacy.cmap_anonymized"] == 61.0 and run.data.metrics["run.best_epoch"] == 2.0
    assert artifact_paths(c, run_id) == {"best_adapter/adapter.safetensors", "best_adapter/meta.json", "config.yaml",
                                         "results.json", "results.md", "privacy.png"}

    # a resume continues the run (params kept, RUNNING again); an unknown run id starts a new one
    assert tracker.start_run(cfg.run_name, cfg.to_dict(), resume=run_id) == run_id
    assert c.get_run(run_id).info.status == "RUNNING"
    tracker.end_run(run_id)
    other = tracker.start_run(cfg.run_name, cfg.to_dict(), resume="0" * 32)
    assert other != run_id
    # a child run names its parent
    child = tracker.start_run("child", {"a": 1}, parent=run_id)
    assert c.get_run(child).data.tags["mlflow.parentRunId"] == run_id


# ------------------------------------------------------------------------------------------------
# End to end: a training run and a sweep
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_training_run_is_followed_in_mlflow(mlflow_server, ray_session, toy_store, tmp_path):
    """The run path (train_and_evaluate, as a sweep trial and train.py use it) with tracking on: params,
    one train_loss point per epoch from the worker, results metrics, artifacts; the checkpoint names the run
    (a resume continues it); TensorBoard event files beside the results."""
    from splavu_ray.distributed.run import train_and_evaluate
    from splavu_ray.distributed.torch_trainer import last_tracking_run
    from splavu_ray.evaluation.suite import EvalPlan

    cfg = load_config(None, [
        "run_name=tracked", f"output_dir={tmp_path / 'tracked'}", "adapter.layers=1", "adapter.heads=4",
        "optim.batch_size=16", "optim.base_batch_size=16", "optim.lr=3e-3", "optim.epochs=2", "optim.head_epochs=1",
        "optim.warmup_epochs=0", "scaling.num_workers=1", "deepspeed.zero_stage=0", "eval.privacy.attacker_epochs=5",
        "eval.action.probe_epochs=5", "eval.privacy.attackers=[mlp]", "eval.plots=false", f"tracking.mlflow_uri={mlflow_server}",
        "tracking.experiment=e2e", "tracking.tensorboard=true"])
    folder = RunFolder.of(cfg)
    plan = EvalPlan(["privacy", "action"], {"privacy": toy_store.root, "action": toy_store.root})
    results = train_and_evaluate(cfg, folder, plan, {toy_store.root: toy_store}, toy_store.root)
    run_id = results["run"]["mlflow_run_id"]
    assert json.loads(folder.results_json.read_text())["run"]["mlflow_run_id"] == run_id

    c = client(mlflow_server)
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    assert c.get_experiment(run.info.experiment_id).name == "e2e"
    assert run.data.params["optim.epochs"] == "2" and run.data.params["scaling.num_workers"] == "1"
    history = c.get_metric_history(run_id, "train_loss")
    assert sorted(m.step for m in history) == [1, 2, 3]  # head epoch + 2 joint epochs, one point each
    assert {"val_top1", "lr", "clips_per_s"} <= set(run.data.metrics)
    assert run.data.metrics["privacy.cmap_anonymized"] == results["privacy"]["cmap_anonymized"]
    assert run.data.metrics["action.top1_anonymized"] == results["action"]["top1_anonymized"]
    arts = artifact_paths(c, run_id)
    assert {"best_adapter/adapter.safetensors", "adapter/adapter.safetensors", "results.md", "results.json",
            "config.yaml"} <= arts, arts
    # the checkpoint names the run, so a resume after a driver restart continues it
    assert last_tracking_run(folder.checkpoints, cfg.run_name) == run_id
    assert [s for s, _ in tb_scalars(folder.tensorboard)["train_loss"]] == [1, 2, 3]


@pytest.mark.slow
def test_sweep_is_a_parent_run_with_one_child_per_trial(mlflow_server, tmp_path):
    sys.path.insert(0, str(TESTS / "distributed"))
    from test_tune import write_sweep  # the sweep tests' tiny base and search space
    from toy import make_toy_store

    store = make_toy_store(tmp_path / "store", n_train=32, n_val=16, n_test=16)
    # the random sampler: Tune pickles its searcher, and optuna 5.1's NSGAIISampler holds a thread lock
    path = write_sweep(tmp_path, name="tracked", feature_store=store.root, sampler={"name": "random", "seed": 0})
    spec = yaml.safe_load(path.read_text())
    spec["base"]["tracking"] = {"mlflow_uri": mlflow_server, "experiment": "sweeps"}
    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.run([sys.executable, "-m", "splavu_ray.sweep", str(path)], capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    c = client(mlflow_server)
    exp = c.get_experiment_by_name("sweeps")
    runs = c.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 3
    parent = parents[0]
    assert parent.info.run_name == "tracked" and parent.info.status == "FINISHED"
    assert parent.data.params["n_trials"] == "2" and parent.data.params["base.optim.epochs"] == "1"
    assert parent.data.metrics["n_trials"] == 2
    assert {"summary.json", "trials.csv", "sweep.yaml"} <= artifact_paths(c, parent.info.run_id)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED" and child.info.run_name.startswith("trial-")
        assert {"objective.privacy_cmap", "objective.action.top1_anonymized", "privacy.cmap_anonymized"} \
            <= set(child.data.metrics)
        assert {"loss.w_b", "loss.w_lc"} <= set(child.data.params)
        assert len(c.get_metric_history(child.info.run_id, "train_loss")) == 1  # epochs: 1, head_epochs: 0
