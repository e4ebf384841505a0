"""Sweeps on Ray Tune with Optuna: each trial is one run of the shared run path, the study is durable.

Ray Tune runs the trials, Optuna (multi-objective, NSGA-II by default) proposes them: minimise the
worst-case attacker cMAP on anonymized features, maximise one or several task metrics. Each trial is
a real training run (a TorchTrainer through splavu_ray.distributed.run.train_and_evaluate) on the
feature store, which is extracted once for the whole sweep.

The Optuna study lives in durable storage in the output folder (SQLite by default, or an RDB URL);
running the same sweep again continues the study: finished trials are kept, trials cut short by the
interruption are marked failed and replaced.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import optuna
import yaml

from ..config import Config
from ..data.feature_store import FeatureStore
from ..data.sources import resolve_manifests
from ..evaluation.suite import EvalPlan
from ..progress import Progress, time_summary
from ..run_folder import RunFolder
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
)
from ..tracking import SWEEP_ARTIFACTS, MlflowTracker
from ..training.preflight import check_inputs
from .feature_job import ensure_features
from .run import train_and_evaluate
from .session import connect


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
    folder = RunFolder(ctx["output_dir"]).trial(trial_id)
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
    record = {"params": params, "tune_trial_id": trial_id, "trial_dir": str(folder.root),
              "privacy_metric": obj["privacy_metric"], "raw": obj["raw"], "best_epoch": results["run"]["best_epoch"],
              "train_eval_s": round(time.time() - t0, 1), "finished": time.time(),
              "timing": results.get("timing")}  # where the trial's time went (results.json "timing")
    folder.trial_record.write_text(json.dumps(record, indent=1))
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


def concurrency(spec: SweepSpec, base: Config, resources: dict[str, float]) -> int:
    """How many trials fit on the cluster at once (each: its driver + its Train workers)."""
    s = base.scaling
    cpu = spec.resources.trial_cpus + s.num_workers * s.cpus_per_worker
    fits = [int(resources.get("CPU", 0) // cpu)]
    if s.use_gpu and s.gpus_per_worker > 0:
        fits.append(int(resources.get("GPU", 0) // (s.num_workers * s.gpus_per_worker)))
    n = min(fits)
    if n < 1:
        raise SweepError(f"one trial needs {cpu:g} CPUs (resources.trial_cpus + scaling.num_workers x "
                         f"cpus_per_worker){' and GPUs' if s.use_gpu else ''}; the cluster has {resources}")
    return min(n, spec.resources.max_concurrent or n)


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


def _TrialProgress(total: int):
    """A Tune callback: one progress line with an ETA per finished (or failed) trial. Tune pickles its
    callbacks with the experiment, so the bar (which holds a lock) is made at the first event."""
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
    folder.sweep_file("sweep.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    folder.sweep_file("base_config.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    study, storage = open_study(spec, fingerprint(spec))
    tracker, parent = _sweep_run(spec, base_cfg, study)  # tracking on: the server answers before any work
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    remaining = spec.n_trials - done
    print(f"[sweep] study {spec.name!r} ({spec.storage_url}): {done} finished trial(s), {max(remaining, 0)} to run",
          flush=True)
    if remaining > 0:
        connect(base_cfg)
        data = prepare_data(spec, base_cfg)
        n_parallel = concurrency(spec, base_cfg, ray.cluster_resources())
        # Seeded by (seed, trials so far): a resumed sweep is reproducible and does not replay the
        # random first generation of the interrupted one.
        sampler = make_sampler(spec.sampler, spec.sampler.seed + len(study.trials))
        searcher = OptunaSearch(
            {k: optuna_distribution(p) for k, p in spec.space.items()}, metric=spec.metric_names, mode=spec.directions,
            sampler=sampler, study_name=spec.name, storage=storage)
        ctx = {"output_dir": str(out), "base": base, "objectives": spec.objectives.model_dump(), **data,
               "mlflow_parent": parent}
        attempt = 1 + len(list(folder.tune.glob("attempt-*"))) if folder.tune.is_dir() else 1
        trainable = ray.tune.with_resources(ray.tune.with_parameters(run_trial, ctx=ctx),
                                            {"cpu": spec.resources.trial_cpus})
        print(f"[sweep] running {remaining} trial(s), {n_parallel} at a time", flush=True)
        # A fresh Tune experiment per attempt: the Optuna study is what resumes (Tune's own
        # experiment restore has broken repeatedly, ray#30861 #40652), and no scheduler stops trials
        # early (cut-short trials would pollute the front).
        tuner = ray.tune.Tuner(
            trainable,
            tune_config=ray.tune.TuneConfig(search_alg=searcher, num_samples=remaining,
                                            max_concurrent_trials=n_parallel, reuse_actors=False),
            run_config=ray.tune.RunConfig(name=f"attempt-{attempt:03d}", storage_path=str(folder.tune), verbose=1,
                                          callbacks=[_TrialProgress(remaining)]),
        )
        grid = tuner.fit()
        for res in grid:
            if res.error:
                print(f"[sweep] a trial failed: {res.error}", file=sys.stderr, flush=True)
    study = optuna.load_study(study_name=spec.name, storage=storage)
    summary = write_outputs(spec, study, folder)
    summary["wall_time_s"] = round(time.time() - t0, 1)
    folder.sweep_file("summary.json").write_text(json.dumps(summary, indent=2))
    print(format_summary(summary, out), flush=True)
    if tracker is not None:
        tracker.finish(parent, summary, [folder.sweep_file(name) for name in SWEEP_ARTIFACTS])
    trial_s = [r["train_eval_s"] for r in load_records(folder)]
    print(time_summary({"sweep": summary["wall_time_s"]}, {"trials": sum(trial_s), "mean per trial":
                                                            sum(trial_s) / max(1, len(trial_s))}), flush=True)
    return summary
