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
import time
from typing import Any

import yaml

from ..config import Config
from ..data.feature_store import FeatureStore
from ..data.sources import resolve_manifests
from ..evaluation.suite import EvalPlan
from ..run_folder import RunFolder
from ..search.frontier import format_summary, write_outputs
from ..search.spec import (
    EVALUATED_SECTIONS,
    RECORD_KEY,
    ObjectivesSpec,
    ParamSpec,
    SamplerSpec,
    SweepError,
    SweepSpec,
    fingerprint,
    objective_values,
    trial_config,
)
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
    results = train_and_evaluate(cfg, folder, plan, stores, ctx["store"], ctx["manifest"])
    obj = objective_values(results, ObjectivesSpec.model_validate(ctx["objectives"]))
    record = {"tune_trial_id": trial_id, "trial_dir": str(folder.root), "privacy_metric": obj["privacy_metric"],
              "raw": obj["raw"], "best_epoch": results["run"]["best_epoch"], "train_eval_s": round(time.time() - t0, 1)}
    ray.tune.report({**obj["values"], RECORD_KEY: json.dumps(record)})


def _searcher_class():
    from ray.tune.search.optuna import OptunaSearch

    class RecordingOptunaSearch(OptunaSearch):
        """Stores each trial's record (trial folder, privacy metric used, raw point) in the Optuna
        study next to its values, so the durable study alone rebuilds every output on resume."""

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            ot_trial = self._ot_trials.get(trial_id)
            if ot_trial is not None and result and RECORD_KEY in result:
                ot_trial.set_user_attr("record", json.loads(result[RECORD_KEY]))
            super().on_trial_complete(trial_id, result=result, error=error)

    return RecordingOptunaSearch


# ------------------------------------------------------------------------------------------------
# The study
# ------------------------------------------------------------------------------------------------


def make_sampler(spec: SamplerSpec, seed: int):
    import optuna

    if spec.name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=spec.population_size, seed=seed)
    if spec.name == "nsga3":
        return optuna.samplers.NSGAIIISampler(population_size=spec.population_size, seed=seed)
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


def run_sweep(spec: SweepSpec, base: dict[str, Any]) -> dict[str, Any]:
    import optuna
    import ray
    import ray.tune
    from optuna.trial import TrialState

    t0 = time.time()
    base_cfg = Config.model_validate(base)
    check_inputs(base_cfg)
    folder = RunFolder(spec.output_path).make()
    out = folder.root
    folder.sweep_file("sweep.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    folder.sweep_file("base_config.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    study, storage = open_study(spec, fingerprint(spec))
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
        searcher = _searcher_class()(
            {k: optuna_distribution(p) for k, p in spec.space.items()}, metric=spec.metric_names, mode=spec.directions,
            sampler=sampler, study_name=spec.name, storage=storage)
        ctx = {"output_dir": str(out), "base": base, "objectives": spec.objectives.model_dump(), **data}
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
            run_config=ray.tune.RunConfig(name=f"attempt-{attempt:03d}", storage_path=str(folder.tune), verbose=1),
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
    return summary
