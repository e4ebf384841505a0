"""Sweeps on Ray Tune with Optuna: each trial is one run of the shared run path, the study is durable.

Ray Tune runs the trials, Optuna (multi-objective, NSGA-II by default) proposes them: minimise the
worst-case attacker cMAP on anonymized features, maximise one or several task metrics. Each trial is
a real training run (a TorchTrainer through splavu_ray.distributed.run.train_and_evaluate) on the
feature store, which is extracted once for the whole sweep.

The Optuna study lives in durable storage in the output folder (SQLite by default, or an RDB URL);
running the same sweep again continues the study: finished trials are kept, trials cut short by the
interruption are marked failed and replaced.

Where things run: each trial's driver holds one ``splavu_driver`` and no CPU, so it runs on the head node
(which advertises that resource; a fresh local Ray does too); its Train workers and its evaluation task
(splavu_ray.distributed.evaluation_task) hold the CPUs/GPUs and go where the autoscaler puts them. How many
trials run at once: ``resources.max_concurrent``, else the cluster at its maxima (:func:`concurrency`).
With ``ray.storage_path`` an object-store URI, a trial's checkpoints, adapters and results live under
``<storage_path>/<sweep name>/trials/<trial id>/`` and the frontier export reads them from there.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import optuna
import yaml

from ..config import Config
from ..data.feature_store import FeatureStore
from ..data.sources import resolve_manifests
from ..evaluation.suite import EvalPlan
from ..progress import Progress, time_summary
from ..run_folder import RunFolder, download_folder, upload_folder
from ..search.frontier import format_summary, load_records, write_outputs
from ..search.spec import (
    EVALUATED_SECTIONS,
    ObjectivesSpec,
    ParamSpec,
    SamplerSpec,
    SweepError,
    SweepSpec,
    fingerprint,
    objective_values,
    trial_config,
    trials_location,
)
from ..tracking import SWEEP_ARTIFACTS, MlflowTracker
from ..training.preflight import check_inputs
from .feature_job import ensure_features
from .run import train_and_evaluate
from .session import DRIVER_RESOURCE, connect, target


def optuna_distribution(param: ParamSpec):
    """The Optuna distribution of one searched key."""
    import optuna.distributions as od

    if param.type == "categorical":
        return od.CategoricalDistribution(param.choices)
    if param.type == "int":
        return od.IntDistribution(int(param.low), int(param.high), log=param.log)
    return od.FloatDistribution(param.low, param.high, log=param.type == "loguniform")


def run_trial(params: dict[str, Any], ctx: dict[str, Any]) -> None:
    """Tune function trainable: one training run, one final report (the objectives).

    Per-epoch Train metrics are not forwarded to Tune (no TuneReportCallback): they lack the
    objectives, which only exist after evaluation, and multi-objective Optuna reads only the last report.
    """
    import ray.tune

    trial_id = ray.tune.get_context().get_trial_id()
    # ray.storage_path a URI: checkpoints, adapters and results under <storage_path>/<sweep>/trials/<id>
    folder = RunFolder(ctx["output_dir"]).trial(trial_id, ctx.get("trials_uri"))
    cfg = trial_config(ctx["base"], params, folder, f"trial-{trial_id}")
    t0 = time.time()
    # A trial scores privacy and action (the sections the objectives may name) on the shared stores.
    plan = EvalPlan(list(EVALUATED_SECTIONS), {"privacy": ctx["privacy_store"], "action": ctx["store"]})
    store = FeatureStore.open(ctx["store"])
    stores = {ctx["store"]: store,
              ctx["privacy_store"]: store if ctx["privacy_store"] == ctx["store"] else FeatureStore.open(ctx["privacy_store"])}
    results = train_and_evaluate(cfg, folder, plan, stores, ctx["store"], ctx["manifest"],
                                 tracking_parent=ctx.get("mlflow_parent"))
    obj = objective_values(results, ObjectivesSpec.model_validate(ctx["objectives"]))
    if results["run"].get("mlflow_run_id"):  # the trial's MLflow run (a child of the sweep's): its objectives
        MlflowTracker(cfg.tracking.mlflow_uri).finish(
            results["run"]["mlflow_run_id"], {"objective": obj["values"]}, [], end=False)
    # The record lives in the trial's folder, matched to its Optuna trial by the parameters: Tune's Optuna
    # searcher offers no public way to add attributes to the Optuna trial it created.
    record = {"params": params, "tune_trial_id": trial_id, "trial_dir": folder.location,
              "privacy_metric": obj["privacy_metric"], "raw": obj["raw"], "best_epoch": results["run"]["best_epoch"],
              "train_eval_s": round(time.time() - t0, 1), "finished": time.time(),
              "timing": results.get("timing")}  # where the trial's time went (results.json "timing")
    folder.trial_record.write_text(json.dumps(record, indent=1))
    folder.publish()  # a trial under a URI: its files (adapters, results, record) go up before it reports
    ray.tune.report(obj["values"])


# ------------------------------------------------------------------------------------------------
# The study
# ------------------------------------------------------------------------------------------------


_LOCK_TYPE = type(threading.Lock())
_LOCK_MARK = "<splavu_ray: a threading.Lock, made anew when unpickled>"


class _PicklableLocks:
    """Tune pickles the search algorithm, and with it the sampler, when it builds the experiment; Optuna
    5.1's genetic samplers (NSGA-II/III) hold a threading.Lock, which cannot be pickled. Locks are left out
    on pickling and made anew on unpickling (tests/distributed/test_tune.py pins it)."""

    def __getstate__(self):
        return {k: _LOCK_MARK if isinstance(v, _LOCK_TYPE) else v for k, v in self.__dict__.items()}

    def __setstate__(self, state):
        self.__dict__.update({k: threading.Lock() if v == _LOCK_MARK else v for k, v in state.items()})


# Module-level classes: Tune's controller checkpoints the searcher with plain pickle, which finds classes by name.
class NSGAIISampler(_PicklableLocks, optuna.samplers.NSGAIISampler):
    pass


class NSGAIIISampler(_PicklableLocks, optuna.samplers.NSGAIIISampler):
    pass


def make_sampler(spec: SamplerSpec, seed: int):
    if spec.name in ("nsga2", "nsga3"):
        sampler_cls = NSGAIISampler if spec.name == "nsga2" else NSGAIIISampler
        return sampler_cls(population_size=spec.population_size, seed=seed)
    if spec.name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(spec: SweepSpec, fp: str):
    """Create or load the durable study; refuse one made by a different sweep; mark trials that an
    interruption left RUNNING as failed (they are replaced, never counted)."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(spec.storage_url)
    directions = ["minimize" if d == "min" else "maximize" for d in spec.directions]
    study = optuna.create_study(storage=storage, study_name=spec.name, directions=directions, load_if_exists=True)
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", fp)
        study.set_user_attr("metric_names", spec.metric_names)
    elif stored != fp or [d.name.lower() for d in study.directions] != directions:
        raise SweepError(f"the study {spec.name!r} in {spec.storage_url} was made by a sweep with a different "
                         "search space, objectives or base config; run it with the original sweep file or "
                         "choose another output_dir / storage")
    stale = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))]
    for number in stale:
        study.tell(number, state=TrialState.FAIL)
    if stale:
        print(f"[sweep] marked {len(stale)} interrupted trial(s) as failed: {stale}", flush=True)
    return study, storage


# ------------------------------------------------------------------------------------------------
# How many trials at once
# ------------------------------------------------------------------------------------------------

# The autoscaler's config on a head the cluster launcher made (Ray Tune's own cluster check reads it too).
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"


@dataclass(frozen=True)
class NodeType:
    """A kind of node the cluster has, or can add: one node's resources and how many of it at most.
    ``resources`` None: not declared (left to detection at launch), so not counted."""

    name: str
    resources: dict[str, float] | None
    max_count: int
    head: bool = False


@dataclass(frozen=True)
class Capacity:
    """What the cluster can hold: its node types at their maxima (``final``: no node will join beyond them)."""

    nodes: list[NodeType]
    max_workers: int | None  # the autoscaler's cap on worker nodes of all types together
    source: str  # where the numbers come from, for the log line
    final: bool


def capacity_from_autoscaler(config: dict[str, Any]) -> Capacity:
    """The cluster's maxima from an autoscaler (cluster launcher) config: ``available_node_types`` (each type's
    ``resources`` and ``max_workers``), the head type (one node) and the global ``max_workers``."""
    head = config.get("head_node_type")
    nodes = []
    for name, t in (config.get("available_node_types") or {}).items():
        res = t.get("resources") or {}
        declared = {k: float(v) for k, v in res.items()} if ("CPU" in res or name == head) else None
        nodes.append(NodeType(name, declared, 1 if name == head else int(t.get("max_workers", 0) or 0), name == head))
    cap = config.get("max_workers")
    return Capacity(nodes, None if cap is None else int(cap), "the autoscaler's node types at their max_workers", True)


def capacity_from_nodes(nodes: list[dict[str, Any]], final: bool) -> Capacity:
    """The cluster as it is now (``ray.nodes()``): on a Ray this process started, all there will be."""
    alive = [NodeType(n.get("NodeManagerAddress", "node"), {k: float(v) for k, v in n["Resources"].items()}, 1,
                      "node:__internal_head__" in n["Resources"]) for n in nodes if n.get("Alive")]
    return Capacity(alive, None, "the nodes up now" + ("" if final else " (more may join)"), final)


def _read_bootstrap() -> dict[str, Any] | None:
    path = os.path.expanduser(BOOTSTRAP_CONFIG)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return yaml.safe_load(f)


def autoscaler_config() -> dict[str, Any] | None:
    """The autoscaler's config, read on the head node (here when this driver runs there, as under
    ``ray job submit``; else by a zero-CPU task pinned to the head); None without an autoscaler."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if (local := _read_bootstrap()) is not None:
        return local
    here = ray.get_runtime_context().get_node_id()
    heads = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and "node:__internal_head__" in n["Resources"]]
    if not heads or heads[0] == here:
        return None
    task = ray.remote(_read_bootstrap).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(heads[0], soft=False))
    try:
        return ray.get(task.remote(), timeout=60)
    except Exception as exc:  # noqa: BLE001 - the live nodes are the fallback
        print(f"[sweep] could not read the autoscaler config on the head ({type(exc).__name__}: {exc}); "
              "sizing from the nodes up now", file=sys.stderr, flush=True)
        return None


def cluster_capacity(local: bool) -> Capacity:
    """The autoscaler's node types at their maxima when the cluster has an autoscaler, else the nodes up now
    (``local``: a Ray this process started, which nothing will join)."""
    import ray

    config = None if local else autoscaler_config()
    if config and config.get("available_node_types"):
        capacity = capacity_from_autoscaler(config)
        live = capacity_from_nodes(ray.nodes(), final=True)
        head = next((t.resources for t in live.nodes if t.head), None)
        if head is not None:  # the running head knows its own resources (e.g. splavu_driver from `ray start`)
            capacity.nodes[:] = [NodeType(t.name, head, 1, True) if t.head else t for t in capacity.nodes]
        return capacity
    return capacity_from_nodes(ray.nodes(), final=local)


def worker_need(base: Config) -> dict[str, float]:
    """What one Train worker of a trial holds."""
    s = base.scaling
    need = {"CPU": float(s.cpus_per_worker)}
    if s.use_gpu and s.gpus_per_worker > 0:
        need["GPU"] = float(s.gpus_per_worker)
    if s.accelerator_type:  # as Ray Train asks for it: only node types with that GPU model count
        need[f"accelerator_type:{s.accelerator_type}"] = 0.001
    return need


def concurrency(spec: SweepSpec, base: Config, capacity: Capacity) -> int:
    """How many trials run at once: ``resources.max_concurrent`` when the sweep file sets it, else as many as
    the cluster holds at its maxima: each trial holds one ``splavu_driver`` (its driver, on the head, no CPU)
    and ``scaling.num_workers`` workers of ``scaling.cpus_per_worker`` CPUs (+ ``gpus_per_worker`` GPUs).
    Workers not up yet are no reason to stop: Tune queues the trials while the autoscaler adds nodes. A clear
    error only when no trial can ever run (no node type fits a worker, or too few workers ever, no driver slot)."""
    s, need = base.scaling, worker_need(base)

    def per_node(res: dict[str, float]) -> int:
        return min(int(res.get(k, 0.0) // v) for k, v in need.items())

    known = [t for t in capacity.nodes if t.resources is not None]
    unknown = [t.name for t in capacity.nodes if t.resources is None and t.max_count > 0]
    drivers = sum(int(t.resources.get(DRIVER_RESOURCE, 0)) * t.max_count for t in known)
    if drivers < 1:
        raise SweepError(f"no node can run a trial driver: it holds one {DRIVER_RESOURCE!r} (and no CPU), which "
                         f"only the head node advertises ({capacity.source}); give the head `resources: "
                         f"{{\"CPU\": 0, \"{DRIVER_RESOURCE}\": 8}}` in the cluster yaml")
    slots = sum(per_node(t.resources) * t.max_count for t in known if t.head)
    left = capacity.max_workers if capacity.max_workers is not None else sum(t.max_count for t in known)
    for t in sorted((t for t in known if not t.head), key=lambda t: -per_node(t.resources)):
        k = max(0, min(t.max_count, left))
        slots, left = slots + per_node(t.resources) * k, left - k
    fits = min(drivers, slots // s.num_workers)
    wanted = spec.resources.max_concurrent
    if fits < 1 and capacity.final and not unknown:
        largest = max((per_node(t.resources) for t in known), default=0)
        raise SweepError(
            f"a trial can never run on this cluster ({capacity.source}): it needs scaling.num_workers="
            f"{s.num_workers} workers of {need}, and " + (
                f"no node type holds even one (node types: {[(t.name, t.resources) for t in known]})" if largest < 1
                else f"the cluster holds at most {slots} at once") +
            "; lower scaling.num_workers / cpus_per_worker / gpus_per_worker, or add a node type that fits")
    if wanted:
        return wanted
    if fits < 1:  # more may join (no autoscaler config seen), or node types whose resources are detected at launch
        print(f"[sweep] the cluster holds no trial yet ({capacity.source}"
              f"{', node types without declared resources: ' + str(unknown) if unknown else ''}); running 1 trial "
              "at a time, queued until workers join (set resources.max_concurrent to choose)", file=sys.stderr,
              flush=True)
        return 1
    return fits


def capacity_line(capacity: Capacity) -> str:
    return ", ".join(f"{t.name} x{t.max_count} {t.resources if t.resources is not None else '(resources not declared)'}"
                     for t in capacity.nodes) + (f"; at most {capacity.max_workers} worker nodes"
                                                 if capacity.max_workers is not None else "")


def _sweep_run(spec: SweepSpec, base_cfg: Config, study) -> tuple[MlflowTracker | None, str | None]:
    """With ``base.tracking.mlflow_uri`` set: the sweep's MLflow run (params: the sweep file), the parent of
    every trial's run. Its id is kept in the study, so running the sweep again continues the same run."""
    tracker = MlflowTracker.of(base_cfg)
    if tracker is None:
        return None, None
    parent = tracker.start_run(spec.name, spec.model_dump(mode="json"), resume=study.user_attrs.get("mlflow_run_id"),
                               tags={"splavu_ray.kind": "sweep", "output_dir": str(spec.output_path)})
    study.set_user_attr("mlflow_run_id", parent)
    print(f"[sweep] MLflow run {parent} (experiment {tracker.experiment_id}) at {tracker.uri}", flush=True)
    return tracker, parent


def prepare_data(spec: SweepSpec, cfg: Config) -> dict[str, Any]:
    """The feature stores every trial reads (extracted once here) and the manifest (online mode)."""
    if spec.feature_store:
        store = FeatureStore.open(spec.feature_store)
        manifest = None
        if cfg.train.mode == "online":
            if cfg.data.dataset == "synthetic":
                raise SweepError("sweep key 'feature_store' with train.mode=online needs base.data.dataset "
                                 "to name the manifest the store was extracted from")
            manifest = cfg.data.dataset
        return {"store": store.root, "privacy_store": store.root, "manifest": manifest}
    manifests = resolve_manifests(cfg)
    store = ensure_features(cfg, manifests["main"])
    pstore = store if manifests["privacy"] == manifests["main"] else ensure_features(cfg, manifests["privacy"])
    return {"store": store.root, "privacy_store": pstore.root, "manifest": manifests["main"]}


def _TrialProgress(total: int, publish: Callable[[], Any] | None = None):
    """A Tune callback: one progress line with an ETA per finished (or failed) trial, and ``publish()`` after
    each (an s3:// output_dir then holds the study as it grows). Tune pickles its callbacks with the
    experiment, so the bar (which holds a lock) is made at the first event."""
    import ray.tune

    class TrialProgress(ray.tune.Callback):
        def __init__(self):
            self.bar, self.failed = None, 0

        def __getstate__(self):
            return {**self.__dict__, "bar": None}

        def _tick(self):
            if self.bar is None:
                self.bar = Progress(total, "sweep", unit="trial", min_interval=0)
            self.bar.update(1, failed=self.failed)
            if publish is not None:
                try:
                    publish()
                except OSError as exc:  # the next trial (or the end of the sweep) publishes again
                    print(f"[sweep] warning: {exc}", file=sys.stderr, flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._tick()

        def on_trial_error(self, iteration, trials, trial, **info):
            self.failed += 1
            self._tick()

        def on_experiment_end(self, trials, **info):
            if self.bar is not None:
                self.bar.close()

    return TrialProgress()


def run_sweep(spec: SweepSpec, base: dict[str, Any]) -> dict[str, Any]:
    import optuna
    import ray
    import ray.tune
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    t0 = time.time()
    base_cfg = Config.model_validate(base)
    check_inputs(base_cfg)
    folder = RunFolder(spec.output_path).make()
    out = folder.root
    publish = None
    if spec.remote_output:  # work in the staging folder; resume a study another machine published there
        print(f"[sweep] output_dir {spec.remote_output}: staged in {out}", flush=True)
        if not spec.storage and not folder.sweep_file("optuna.db").exists():
            if fetched := download_folder(spec.remote_output, out, exclude=("trials", "tune")):
                print(f"[sweep] {len(fetched)} file(s) of an earlier attempt fetched from {spec.remote_output}",
                      flush=True)
        publish = partial(upload_folder, out, spec.remote_output, exclude=("tune", "trials"))  # trials: already in trials_uri
    folder.sweep_file("sweep.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    folder.sweep_file("base_config.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    study, storage = open_study(spec, fingerprint(spec))
    trials_uri = trials_location(spec, base)
    if trials_uri:
        print(f"[sweep] trial checkpoints, adapters and results under {trials_uri}", flush=True)
    tracker, parent = _sweep_run(spec, base_cfg, study)  # tracking on: the server answers before any work
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    remaining = spec.n_trials - done
    print(f"[sweep] study {spec.name!r} ({spec.storage_url}): {done} finished trial(s), {max(remaining, 0)} to run",
          flush=True)
    if remaining > 0:
        connect(base_cfg, driver_slots=True)
        data = prepare_data(spec, base_cfg)
        capacity = cluster_capacity(local=target(base_cfg)[0] == "local")
        n_parallel = concurrency(spec, base_cfg, capacity)
        # Seeded by (seed, trials so far): a resumed sweep is reproducible and does not replay the
        # random first generation of the interrupted one.
        sampler = make_sampler(spec.sampler, spec.sampler.seed + len(study.trials))
        searcher = OptunaSearch(
            {k: optuna_distribution(p) for k, p in spec.space.items()}, metric=spec.metric_names, mode=spec.directions,
            sampler=sampler, study_name=spec.name, storage=storage)
        ctx = {"output_dir": str(out), "base": base, "objectives": spec.objectives.model_dump(), **data,
               "mlflow_parent": parent, "trials_uri": trials_uri}
        attempt = 1 + len(list(folder.tune.glob("attempt-*"))) if folder.tune.is_dir() else 1
        # A trial's driver holds one splavu_driver and no CPU: it runs on the head, never on a spot worker;
        # its Train workers and its evaluation task hold the CPUs/GPUs (scaling).
        trainable = ray.tune.with_resources(ray.tune.with_parameters(run_trial, ctx=ctx),
                                            ray.tune.PlacementGroupFactory([{"CPU": 0, DRIVER_RESOURCE: 1}]))
        how = ("resources.max_concurrent" if spec.resources.max_concurrent
               else f"{capacity.source}: {capacity_line(capacity)}")
        print(f"[sweep] running {remaining} trial(s), {n_parallel} at a time ({how})", flush=True)
        # A fresh Tune experiment per attempt: the Optuna study is what resumes (Tune's own
        # experiment restore has broken repeatedly, ray#30861 #40652), and no scheduler stops trials
        # early (cut-short trials would pollute the front).
        tuner = ray.tune.Tuner(
            trainable,
            tune_config=ray.tune.TuneConfig(search_alg=searcher, num_samples=remaining,
                                            max_concurrent_trials=n_parallel, reuse_actors=False),
            run_config=ray.tune.RunConfig(name=f"attempt-{attempt:03d}", storage_path=str(folder.tune), verbose=1,
                                          callbacks=[_TrialProgress(remaining, publish)]),
        )
        grid = tuner.fit()
        for res in grid:
            if res.error:
                print(f"[sweep] a trial failed: {res.error}", file=sys.stderr, flush=True)
    study = optuna.load_study(study_name=spec.name, storage=storage)
    summary = write_outputs(spec, study, folder, trials_uri)
    summary["wall_time_s"] = round(time.time() - t0, 1)
    folder.sweep_file("summary.json").write_text(json.dumps(summary, indent=2))
    print(format_summary(summary, out), flush=True)
    if tracker is not None:
        tracker.finish(parent, summary, [folder.sweep_file(name) for name in SWEEP_ARTIFACTS])
    if publish is not None:
        publish()
        print(f"[sweep] published to {spec.remote_output}", flush=True)
    trial_s = [r["train_eval_s"] for r in load_records(folder, trials_uri)]
    print(time_summary({"sweep": summary["wall_time_s"]}, {"trials": sum(trial_s), "mean per trial":
                                                            sum(trial_s) / max(1, len(trial_s))}), flush=True)
    return summary
