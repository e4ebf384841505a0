"""Sweeps: the sweep file and its checks, the study and its outputs, and an interrupted + resumed
sweep end to end through the CLI (Ray Tune + Optuna + one TorchTrainer per trial, toy feature store)."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml

from splavu_ray.config import AdapterConfig, validate
from splavu_ray.distributed.session import DRIVER_RESOURCE
from splavu_ray.distributed.tune import (
    Capacity,
    NodeType,
    capacity_from_autoscaler,
    capacity_from_nodes,
    concurrency,
    open_study,
    optuna_distribution,
)
from splavu_ray.models.adapter import adapter_from_config, load_adapter, save_adapter
from splavu_ray.run_folder import RunFolder
from splavu_ray.search.frontier import write_outputs
from splavu_ray.search.spec import PRIVACY_KEY, SweepError, fingerprint, load_sweep, objective_values
from splavu_ray.sweep import main

REPO = Path(__file__).resolve().parents[2]
TINY_BASE = {
    "adapter": {"layers": 1, "heads": 4},
    "optim": {"batch_size": 16, "base_batch_size": 16, "lr": 3e-3, "epochs": 1, "head_epochs": 0, "warmup_epochs": 0},
    "scaling": {"num_workers": 1}, "deepspeed": {"zero_stage": 0},
    "eval": {"privacy": {"attacker_epochs": 5}, "action": {"probe_epochs": 5}},
    "ray": {"address": "local"},  # never join another Ray running on this machine
}


def write_sweep(tmp_path, name="toy", **fields) -> Path:
    spec = {"name": name, "n_trials": 2, "output_dir": str(tmp_path / "out"), "base": TINY_BASE,
            "sampler": {"population_size": 2, "seed": 0},
            "space": {"loss.w_b": {"type": "loguniform", "low": 0.1, "high": 10.0},
                      "loss.w_lc": {"type": "loguniform", "low": 1.0, "high": 100.0}}}
    spec.update(fields)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("name", ["loss_weights", "adapter", "quick"])
def test_shipped_sweeps_validate_against_the_config_schema(name):
    spec, base = load_sweep(REPO / "sweeps" / f"{name}.yaml")
    assert spec.sampler.name == "nsga2" and spec.directions[0] == "min"
    assert validate(base).run_name  # the base config is a valid training config


def test_bad_sweep_fails_before_any_work(tmp_path, capsys):
    path = write_sweep(tmp_path)
    cases = [
        (["space.loss.w_nope.type=uniform", "space.loss.w_nope.low=0", "space.loss.w_nope.high=1"],
         "unknown config key 'loss.w_nope'"),
        (["space.adapter.layers.type=int", "space.adapter.layers.low=0", "space.adapter.layers.high=3"],
         "'space.adapter.layers' (value 0)"),
        (["space.loss.w_b.low=-1"], "loguniform parameter needs low > 0"),
        (["n_trial=3"], "unknown sweep key 'n_trial'"),
        (["objectives.utility=[tad.map]"], "a trial evaluates only the sections"),
        (["space.run_name.type=categorical", "space.run_name.choices=[a]"], "cannot be searched"),
        (["space.eval.score_on.type=categorical", "space.eval.score_on.choices=[test]"], "cannot be searched"),
        (["base.eval.score_on=test"], "trials are always scored on the selection split"),
    ]
    for overrides, message in cases:
        assert main([str(path), *overrides]) == 2, overrides
        assert message in capsys.readouterr().err, overrides
    assert not (tmp_path / "out").exists()


def test_objective_values_prefer_the_worst_case_attacker_and_name_the_fallback(tmp_path):
    spec, _ = load_sweep(write_sweep(tmp_path))
    results = {"privacy": {"cmap_anonymized": 60.0, "cmap_raw": 80.0},
               "action": {"top1_anonymized": 70.0, "top1_raw": 72.0}}
    obj = objective_values(results, spec.objectives)
    assert obj["privacy_metric"] == "privacy.cmap_anonymized"  # the explicit fallback
    assert obj["values"] == {PRIVACY_KEY: 60.0, "action.top1_anonymized": 70.0}
    assert obj["raw"] == {PRIVACY_KEY: 80.0, "action.top1_anonymized": 72.0}
    results["privacy"].update(cmap_worst_anonymized=65.0, cmap_worst_raw=85.0)
    obj = objective_values(results, spec.objectives)
    assert obj["privacy_metric"] == "privacy.cmap_worst_anonymized"
    assert obj["values"][PRIVACY_KEY] == 65.0 and obj["raw"][PRIVACY_KEY] == 85.0
    with pytest.raises(SweepError, match="'action' holds"):
        objective_values({"privacy": results["privacy"], "action": {"top5": 1.0}}, spec.objectives)


def test_concurrency_from_the_cluster_at_its_maxima(tmp_path):
    """Drivers hold a splavu_driver (on the head, no CPU); workers hold scaling's CPUs/GPUs. A cluster whose
    workers are not up (autoscaler config: head CPU 0, workers at 0) still runs; only a config that can never
    fit is an error."""
    spec, base = load_sweep(write_sweep(tmp_path))
    cfg = validate(base)  # 1 worker x 1 CPU per trial
    local = lambda cpus, drivers=8: Capacity([NodeType("here", {"CPU": cpus, DRIVER_RESOURCE: drivers}, 1, True)],
                                             None, "test", True)  # noqa: E731
    assert concurrency(spec, cfg, local(2)) == 2 and concurrency(spec, cfg, local(9, drivers=3)) == 3
    with pytest.raises(SweepError, match="can never run.*no node type holds even one"):
        concurrency(spec, cfg, local(0.5))
    with pytest.raises(SweepError, match="splavu_driver.*cluster yaml"):
        concurrency(spec, cfg, local(4, drivers=0))

    gpu = validate({**base, "scaling": {"num_workers": 2, "use_gpu": True}})
    yaml_cfg = {"max_workers": 8, "head_node_type": "head", "available_node_types": {
        "head": {"resources": {"CPU": 0, DRIVER_RESOURCE: 8}, "max_workers": 0},
        "cpu": {"resources": {"CPU": 16}, "max_workers": 2},
        "gpu": {"resources": {"CPU": 8, "GPU": 1}, "max_workers": 6}}}
    cap = capacity_from_autoscaler(yaml_cfg)
    assert concurrency(spec, gpu, cap) == 3  # 6 one-GPU nodes, 2 GPU workers a trial
    assert concurrency(spec, cfg, cap) == 8  # 8 drivers on the head
    yaml_cfg["max_workers"] = 3  # the cap goes to the node types holding most workers first
    assert concurrency(spec, cfg, capacity_from_autoscaler(yaml_cfg)) == 8  # 2 cpu + 1 gpu node: 40 CPU workers
    assert concurrency(spec, gpu, capacity_from_autoscaler(yaml_cfg)) == 1  # 3 gpu nodes: one 2-GPU trial
    with pytest.raises(SweepError, match="at most 1 at once"):
        yaml_cfg["max_workers"] = 1
        concurrency(spec, gpu, capacity_from_autoscaler({**yaml_cfg, "available_node_types": {
            k: v for k, v in yaml_cfg["available_node_types"].items() if k != "cpu"}}))

    # Joined cluster, no autoscaler config seen, workers not up: 1 at a time, or resources.max_concurrent.
    head_only = capacity_from_nodes([{"Alive": True, "NodeManagerAddress": "10.0.0.1",
                                      "Resources": {DRIVER_RESOURCE: 8.0, "node:__internal_head__": 1.0}}], False)
    assert concurrency(spec, gpu, head_only) == 1
    spec4, _ = load_sweep(write_sweep(tmp_path), ["resources.max_concurrent=4"])
    assert concurrency(spec4, gpu, head_only) == 4
    # Node types whose resources are detected at launch (resources: {}) are not counted, nor a reason to stop.
    assert concurrency(spec, gpu, capacity_from_autoscaler({"head_node_type": "head", "available_node_types": {
        "head": {"resources": {"CPU": 0, DRIVER_RESOURCE: 8}}, "gpu": {"resources": {}, "max_workers": 4}}})) == 1
    with pytest.raises(SweepError, match="'trial_cpus' is gone"):
        load_sweep(write_sweep(tmp_path), ["resources.trial_cpus=1"])


def test_study_resume_fails_interrupted_trials_and_refuses_another_sweep(tmp_path):
    spec, base = load_sweep(write_sweep(tmp_path))
    spec.output_path.mkdir(parents=True)
    study, _ = open_study(spec, fingerprint(spec))
    study.tell(study.ask(), [50.0, 70.0])
    running = study.ask()  # what a killed sweep leaves behind
    study, _ = open_study(spec, fingerprint(spec))
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL"] and study.trials[running.number].state.name == "FAIL"
    more, _ = load_sweep(write_sweep(tmp_path), ["n_trials=5", "sampler.seed=1"])  # extending is fine
    open_study(more, fingerprint(more))
    for change in (["space.loss.w_b.high=5"], ["base.optim.epochs=3"]):
        other, _ = load_sweep(write_sweep(tmp_path), change)
        with pytest.raises(SweepError, match="different search space"):
            open_study(other, fingerprint(other))


def test_outputs_from_a_study(tmp_path):
    """trials.csv, pareto.csv, summary.json (hypervolume by hand), pareto.png, frontier adapters."""
    spec, _ = load_sweep(write_sweep(tmp_path, n_trials=4))
    out = spec.output_path
    study = optuna.create_study(directions=["minimize", "maximize"])
    dists = {k: optuna_distribution(p) for k, p in spec.space.items()}
    #          cMAP  top-1   (the third is dominated by the first)
    points = [(40.0, 70.0), (50.0, 80.0), (45.0, 60.0), (60.0, 90.0)]
    folder = RunFolder(out)
    for i, (cmap, top1) in enumerate(points):
        trial = folder.trial(f"t{i}")  # each trial's record sits in its folder, matched by its parameters
        save_adapter(adapter_from_config(8, AdapterConfig(layers=1, heads=2)), trial.adapter(), {"i": i})
        params = {"loss.w_b": 1.0 + i, "loss.w_lc": 10.0}
        record = {"params": params, "trial_dir": str(trial.root), "privacy_metric": "privacy.cmap_worst_anonymized",
                  "raw": {PRIVACY_KEY: 80.0, "action.top1_anonymized": 95.0}}
        trial.trial_record.write_text(json.dumps(record))
        study.add_trial(optuna.trial.create_trial(values=[cmap, top1], params=params, distributions=dists))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={}, distributions={}))
    summary = write_outputs(spec, study, folder)

    assert summary["n_trials"] == 4 and summary["n_failed"] == 1 and summary["n_pareto"] == 3
    # reference (cMAP 100, top-1 0): 70*60 + 10*50 + 10*40 = 5100; box 100 x 100
    assert summary["hypervolume"] == pytest.approx(5100.0)
    assert summary["normalized_hypervolume"] == pytest.approx(0.51)
    assert summary["raw_point"] == {PRIVACY_KEY: 80.0, "action.top1_anonymized": 95.0}
    assert summary["privacy_metric"]["trials_by_metric"] == {"privacy.cmap_worst_anonymized": 4}
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert [r["state"] for r in rows] == ["COMPLETE"] * 4 + ["FAIL"]
    assert [r["pareto"] for r in rows[:4]] == ["True", "True", "False", "True"]
    front = list(csv.DictReader(open(out / "pareto.csv")))
    assert [int(r["number"]) for r in front] == [0, 1, 3]  # sorted by cMAP
    assert (out / "pareto.png").stat().st_size > 10_000
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 2  # front + objective histories
    assert sorted(p.name for p in (out / "pareto_adapters").iterdir()) == ["trial_0000", "trial_0001", "trial_0003"]
    assert load_adapter(out / "pareto_adapters" / "trial_0001").dim == 8


@pytest.mark.slow
def test_sweep_interrupted_then_resumed_end_to_end(tmp_path):
    """Kill a sweep while its second trial trains; the same command then finishes the study
    without re-running the finished trial, and writes every output."""
    from toy import make_toy_store

    store = make_toy_store(tmp_path / "store", n_train=32, n_val=16, n_test=16)
    # one trial at a time, so the kill lands while the second trains (two fit on 2 CPUs otherwise)
    cmd = [sys.executable, "-m", "splavu_ray.sweep", str(write_sweep(tmp_path, feature_store=store.root,
                                                                     resources={"max_concurrent": 1}))]
    out, db = tmp_path / "out", f"sqlite:///{tmp_path / 'out' / 'optuna.db'}"

    def complete():
        try:  # never create the tables ourselves: that races the sweep's own create_study
            study = optuna.load_study(study_name="toy",
                                      storage=optuna.storages.RDBStorage(db, skip_table_creation=True))
        except Exception:  # not created yet
            return []
        return [t for t in study.trials if t.state.name == "COMPLETE"]

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not complete():
        time.sleep(0.5)
    assert proc.poll() is None, "the sweep ended before it could be interrupted: " + proc.stdout.read()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = complete()
    assert len(first) == 1 and not (out / "summary.json").exists()

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "1 finished trial(s), 1 to run" in again.stdout
    done = complete()
    assert len(done) == 2
    assert (done[0].number, done[0].values, done[0].params) == (first[0].number, first[0].values, first[0].params)
    # The second attempt ran exactly one Tune trial, and it was a new configuration.
    attempts = sorted((out / "tune").glob("attempt-*"))
    assert [a.name for a in attempts] == ["attempt-001", "attempt-002"]
    assert len([p for p in attempts[1].iterdir() if p.is_dir() and p.name.startswith("run_trial")]) == 1
    assert done[1].params != done[0].params

    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_trials"] == 2 and 1 <= summary["n_pareto"] <= 2
    assert summary["scored_on"].startswith("val")  # the objectives never read test
    trial_results = [json.loads(p.read_text()) for p in (out / "trials").rglob("results.json")]
    assert trial_results and {r["scored_on"] for r in trial_results} == {"val"}
    # where each trial's time went, in its results.json and its record; one worker steps without DeepSpeed
    records = [json.loads(p.read_text()) for p in (out / "trials").glob("*/record.json")]
    assert records and all(r["timing"] == res["timing"] for r in records for res in trial_results
                           if res["run"]["run_name"] == f"trial-{r['tune_trial_id']}")
    for r in records:
        assert r["timing"]["training"]["stepper"] == "torch"
        assert {"privacy", "action", "total"} <= set(r["timing"]["evaluation_s"])
    assert summary["privacy_metric"]["trials_by_metric"]  # which privacy metric the values came from
    for key in ("hypervolume", "normalized_hypervolume"):
        assert 0 <= summary[key]
    assert len(list(csv.DictReader(open(out / "trials.csv")))) >= 2
    for t in summary["pareto_trials"]:
        assert load_adapter(t["adapter"]).dim == 32
        assert json.loads((Path(t["adapter"]) / "results.json").read_text())["privacy"]


def test_every_sampler_survives_tunes_pickling():
    # Tune pickles the searcher (and its sampler) with the experiment, and its controller checkpoints it with
    # plain pickle; Optuna 5.1's NSGA-II/III hold a lock.
    import pickle

    import ray.cloudpickle

    from splavu_ray.distributed.tune import make_sampler
    from splavu_ray.search.spec import SamplerSpec

    for name in ("nsga2", "nsga3", "tpe", "random"):
        made = make_sampler(SamplerSpec(name=name, population_size=2), 0)
        sampler = pickle.loads(ray.cloudpickle.loads(ray.cloudpickle.dumps(pickle.dumps(made))))
        study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=3)
        assert len(study.trials) == 3, name


@pytest.mark.slow
def test_sweep_with_trials_in_object_storage_through_the_cli(tmp_path):
    """ray.storage_path=s3://...: each trial's checkpoints, adapters, results and record live under
    <storage_path>/<sweep>/trials/<id>/, and the frontier is exported from there (proved by exporting it
    again with the local trial folders gone). Trial drivers hold splavu_driver (no CPU), so the local Ray
    runs both 1-worker trials at once on 2 CPUs; evaluation ran in a Ray task of its own."""
    from s3 import client, environment, s3_server
    from toy import make_toy_store

    store = make_toy_store(tmp_path / "store", n_train=32, n_val=16, n_test=16)
    with s3_server() as endpoint:
        client(endpoint).create_bucket(Bucket="sweeps")
        base = {**TINY_BASE, "ray": {**TINY_BASE["ray"], "storage_path": "s3://sweeps/runs"}}
        cmd = [sys.executable, "-m", "splavu_ray.sweep",
               str(write_sweep(tmp_path, base=base, feature_store=store.root))]
        env = {**os.environ, **environment(endpoint)}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "2 at a time" in proc.stdout and "under s3://sweeps/runs/toy/trials" in proc.stdout

        keys = [o["Key"] for o in client(endpoint).list_objects_v2(Bucket="sweeps", Prefix="runs/toy/trials/")
                .get("Contents", [])]
        trial_ids = sorted({k.split("/")[3] for k in keys} - {""})  # "": the folder marker pyarrow writes
        assert len(trial_ids) == 2
        for tid in trial_ids:
            prefix = f"runs/toy/trials/{tid}/"
            made = {prefix + f for f in ("record.json", "results.json", "best_adapter/adapter.safetensors")}
            assert made <= set(keys)
            assert any(k.startswith(prefix + "ray/") for k in keys)  # the Ray Train checkpoints
        out = tmp_path / "out"
        records = [json.loads(p.read_text()) for p in (out / "trials").glob("*/record.json")]
        assert sorted(r["trial_dir"] for r in records) == [f"s3://sweeps/runs/toy/trials/{t}" for t in trial_ids]
        for r in records:  # evaluation ran in a Ray task, not in the trial's driver process
            where = r["timing"]["evaluation_task"]
            assert where["ray_task"] and where["pid"] != where["driver_pid"]

        shutil.rmtree(out / "trials")
        shutil.rmtree(out / "pareto_adapters")
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)  # study done: outputs only
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_trials"] == 2 and summary["pareto_trials"]
    for t in summary["pareto_trials"]:
        assert load_adapter(t["adapter"]).dim == 32
        assert json.loads((Path(t["adapter"]) / "results.json").read_text())["privacy"]


@pytest.mark.slow
def test_sweep_on_a_cluster_with_no_worker_yet_starts_and_runs_when_one_joins(tmp_path, monkeypatch):
    """A joined cluster whose head has CPU 0 (and splavu_driver) and no worker node: the sweep does not stop,
    its trial waits in Tune's queue, and runs once a worker node joins. Token auth is on, as on a real cluster:
    the nodes and the sweep's client share this test's own token."""
    from ray.cluster_utils import Cluster
    from ray_jobs import refresh_auth, stop_cluster, token_env
    from toy import make_toy_store

    store = make_toy_store(tmp_path / "store", n_train=32, n_val=16, n_test=16)
    env = token_env(tmp_path)
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.setenv(key, env[key])
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    refresh_auth()

    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short (Ray's sockets live below it); found by stop_cluster
    for attempt in range(3):  # Ray gives a raylet 30 s to register: a loaded machine can miss it
        try:
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                                    "resources": {DRIVER_RESOURCE: 2},
                                                                    "temp_dir": temp})
            break
        except Exception:
            stop_cluster(temp)  # what the failed start left running
            if attempt == 2:
                raise
    proc = None
    try:
        base = {**TINY_BASE, "ray": {"address": cluster.address}}
        cmd = [sys.executable, "-m", "splavu_ray.sweep",
               str(write_sweep(tmp_path, base=base, feature_store=store.root, n_trials=1))]
        # HOME: no autoscaler config (~/ray_bootstrap_config.yaml) that another cluster left on this machine
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**env, "HOME": str(tmp_path)})
        seen = []
        for line in proc.stdout:  # up to the line that says how many trials run at once
            seen.append(line)
            if line.startswith("[sweep] running"):
                break
        assert "running 1 trial(s), 1 at a time" in seen[-1], "".join(seen)[-3000:]
        assert any("queued until workers join" in line for line in seen)
        time.sleep(2)
        assert proc.poll() is None  # waiting for a worker, not failed
        for attempt in range(3):  # the same 30 s for the worker's raylet
            try:
                cluster.add_node(num_cpus=2)
                break
            except Exception:
                if attempt == 2:
                    raise
        rest, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, "".join(seen)[-2000:] + rest[-3000:]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        cluster.shutdown()
        stop_cluster(temp)
        monkeypatch.undo()
        refresh_auth()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n_trials"] == 1


def test_frontier_reads_trials_from_object_storage(tmp_path, monkeypatch):
    """Trials under <storage_path>/<sweep>/trials (ray.storage_path s3://): records, adapters and results are
    read from there through pyarrow.fs, nothing from the sweep's local trials/ folder."""
    from s3 import client, s3_server, use

    from splavu_ray.run_folder import upload_folder
    from splavu_ray.search.spec import trials_location

    spec, base = load_sweep(write_sweep(tmp_path, n_trials=2))
    assert trials_location(spec, base) is None  # local storage path: trials stay in output_dir/trials
    base = {**base, "ray": {**base["ray"], "storage_path": "s3://sweeps/runs/"}}
    uri = trials_location(spec, base)
    assert uri == "s3://sweeps/runs/toy/trials"
    with s3_server() as endpoint:
        use(monkeypatch, endpoint)
        client(endpoint).create_bucket(Bucket="sweeps")
        study = optuna.create_study(directions=["minimize", "maximize"])
        dists = {k: optuna_distribution(p) for k, p in spec.space.items()}
        for i, (cmap, top1) in enumerate([(40.0, 70.0), (50.0, 60.0)]):  # the second is dominated
            trial = RunFolder(tmp_path / "staging").trial(f"t{i}", uri)
            assert trial.checkpoints == f"{uri}/t{i}/ray" and trial.location == f"{uri}/t{i}"
            save_adapter(adapter_from_config(8, AdapterConfig(layers=1, heads=2)), trial.adapter(), {"i": i})
            trial.results_json.write_text(json.dumps({"privacy": {"i": i}}))
            params = {"loss.w_b": 1.0 + i, "loss.w_lc": 10.0}
            trial.trial_record.write_text(json.dumps({"params": params, "trial_dir": trial.location,
                                                      "privacy_metric": "privacy.cmap_worst_anonymized"}))
            upload_folder(trial.root, trial.location)
            study.add_trial(optuna.trial.create_trial(values=[cmap, top1], params=params, distributions=dists))
        summary = write_outputs(spec, study, RunFolder(spec.output_path).make(), uri)
    assert not (spec.output_path / "trials").exists()
    assert summary["n_pareto"] == 1 and summary["pareto_trials"][0]["adapter"].endswith("trial_0000")
    exported = Path(summary["pareto_trials"][0]["adapter"])
    assert load_adapter(exported).dim == 8 and json.loads((exported / "results.json").read_text()) == {"privacy": {"i": 0}}
    rows = list(csv.DictReader(open(spec.output_path / "trials.csv")))
    assert [r["trial_dir"] for r in rows] == [f"{uri}/t0", f"{uri}/t1"]
