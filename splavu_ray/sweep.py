"""Privacy/utility sweeps: ``python -m splavu_ray.sweep sweeps/NAME.yaml [key=value ...]``.

Ray Tune runs the trials, Optuna (multi-objective, NSGA-II by default) proposes them: minimise the
worst-case attacker cMAP on anonymized features, maximise one or several task metrics. Each trial is
a real training run (a TorchTrainer, the same fit -> export -> evaluate path as
``python -m splavu_ray.train``) on the feature store, which is extracted once for the whole sweep.

The Optuna study lives in durable storage in the output folder (SQLite by default, or an RDB URL);
running the same command again continues the study: finished trials are kept, trials cut short by
the interruption are marked failed and replaced. Outputs (output_dir): trials.csv, pareto.csv,
summary.json, pareto.png and the frontier trials' adapters in pareto_adapters/.

Overrides apply to the sweep file; training-config keys go under ``base.`` (``base.optim.epochs=2``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import Field, PrivateAttr, field_validator, model_validator

from . import pareto
from .config import (CONFIG_DIR, Config, ConfigError, _Section, deep_merge, parse_overrides, read_yaml,
                     validate)

# The privacy objective is the worst case over attackers when evaluate.py reports it; older results
# only carry the single MLP attacker's cMAP. The fallback is explicit and recorded per trial.
PRIVACY_METRIC = "privacy.cmap_worst_anonymized"
PRIVACY_FALLBACK = "privacy.cmap_anonymized"
PRIVACY_KEY = "privacy_cmap"  # the name of the privacy objective in Tune results and the outputs
RECORD_KEY = "sweep_record"
# Sections of results.json a trial computes (evaluate_features: privacy leakage and action top-1).
EVALUATED_SECTIONS = ("privacy", "action")
# Keys the sweep sets per trial: sweeping them would break the trial layout.
MANAGED_KEYS = ("run_name", "output_dir", "ray.storage_path", "ray.address")


class SweepError(ConfigError):
    """A sweep file, key, value or study is not acceptable. The message names the problem."""


# ------------------------------------------------------------------------------------------------
# The sweep file
# ------------------------------------------------------------------------------------------------


class ParamSpec(_Section):
    """One searched training-config key."""

    type: Literal["loguniform", "uniform", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = Field(False, description="int only: sample on a log scale")
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> "ParamSpec":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical parameter takes 'choices', not low/high")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.type} parameter needs low < high (got low={self.low}, high={self.high})")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"a loguniform parameter needs low > 0 (got {self.low})")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an int parameter needs integer bounds (got {self.low}, {self.high})")
        if self.choices is not None:
            raise ValueError(f"a {self.type} parameter takes low/high, not 'choices'")
        return self

    def distribution(self):
        import optuna.distributions as od

        if self.type == "categorical":
            return od.CategoricalDistribution(self.choices)
        if self.type == "int":
            return od.IntDistribution(int(self.low), int(self.high), log=self.log)
        return od.FloatDistribution(self.low, self.high, log=self.type == "loguniform")

    def corners(self) -> list[Any]:
        """Values that together exercise the whole range (checked against the schema up front)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


class ObjectivesSpec(_Section):
    privacy: str = Field(PRIVACY_METRIC, description="results.json key minimised (lower cMAP = more private)")
    privacy_fallback: str | None = Field(PRIVACY_FALLBACK, description="used when 'privacy' is absent from results")
    utility: list[str] = Field(default_factory=lambda: ["action.top1_anonymized"], min_length=1,
                               description="results.json keys maximised")

    @field_validator("privacy", "privacy_fallback")
    @classmethod
    def _dotted(cls, v):
        if v is not None and "." not in v:
            raise ValueError(f"{v!r} must be a dotted results.json key such as privacy.cmap_anonymized")
        return v

    @field_validator("utility")
    @classmethod
    def _dotted_list(cls, v):
        bad = [m for m in v if "." not in m]
        if bad:
            raise ValueError(f"{bad} must be dotted results.json keys such as action.top1_anonymized")
        if len(set(v)) != len(v):
            raise ValueError(f"utility metrics repeat: {v}")
        bad = [m for m in v if m.split(".")[0] not in EVALUATED_SECTIONS]
        if bad:
            raise ValueError(f"{bad}: a trial evaluates only the sections {list(EVALUATED_SECTIONS)} "
                             "(e.g. action.top1_anonymized)")
        return v


class ReferenceSpec(_Section):
    """Hypervolume reference (worst) and ideal (best) points, in the metrics' units (percent)."""

    privacy: float = Field(100.0, description="worst privacy: cMAP 100")
    utility: float | list[float] = Field(0.0, description="worst utility, one value or one per utility metric")
    ideal_privacy: float = Field(0.0, description="best privacy for the normalised hypervolume")
    ideal_utility: float | list[float] = Field(100.0, description="best utility for the normalised hypervolume")


class SamplerSpec(_Section):
    name: Literal["nsga2", "nsga3", "tpe", "random"] = "nsga2"
    population_size: int = Field(8, ge=2, description="NSGA-II/III generation size")
    seed: int = 0


class ResourcesSpec(_Section):
    trial_cpus: float = Field(1.0, gt=0, description="CPUs held by each trial's driver (it runs the evaluation)")
    max_concurrent: int | None = Field(None, ge=1, description="None: as many trials as the cluster's resources hold")


class SweepSpec(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="study name; output_dir defaults to outputs/sweeps/NAME")
    base_config: str | None = Field(None, description="training config YAML (relative to the sweep file); None = built-in demo")
    base: dict[str, Any] = Field(default_factory=dict, description="training-config keys fixed for every trial, nested")
    space: dict[str, ParamSpec] = Field(min_length=1, description="dotted training-config key -> distribution")
    objectives: ObjectivesSpec = Field(default_factory=ObjectivesSpec)
    n_trials: int = Field(ge=1, description="completed trials the study should hold")
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    reference_point: ReferenceSpec = Field(default_factory=ReferenceSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    output_dir: str | None = None
    storage: str | None = Field(None, description="Optuna storage URL; None = sqlite:///OUTPUT_DIR/optuna.db")
    feature_store: str | None = Field(None, description="an existing feature store; None = extract (once) for the base config")
    _base_given: dict[str, Any] = PrivateAttr(default_factory=dict)  # base config as written (file + 'base')

    @field_validator("space")
    @classmethod
    def _no_managed(cls, v):
        bad = [k for k in v if k in MANAGED_KEYS]
        if bad:
            raise ValueError(f"{bad} are set by the sweep for each trial and cannot be searched")
        return v

    @property
    def output_path(self) -> Path:
        return Path(os.path.expanduser(self.output_dir or f"outputs/sweeps/{self.name}")).resolve()

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{self.output_path / 'optuna.db'}"

    @property
    def metric_names(self) -> list[str]:
        return [PRIVACY_KEY, *self.objectives.utility]

    @property
    def directions(self) -> list[str]:
        return ["min"] + ["max"] * len(self.objectives.utility)

    def reference(self) -> tuple[list[float], list[float]]:
        """(reference point, ideal point), one value per objective."""
        r, k = self.reference_point, len(self.objectives.utility)

        def per_utility(v, what):
            v = [v] * k if isinstance(v, (int, float)) else list(v)
            if len(v) != k:
                raise SweepError(f"sweep key 'reference_point.{what}': {len(v)} values for {k} utility metrics")
            return v

        return ([r.privacy, *per_utility(r.utility, "utility")],
                [r.ideal_privacy, *per_utility(r.ideal_utility, "ideal_utility")])


def flatten_space(space: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"loss": {"w_b": {...}}}`` and ``{"loss.w_b": {...}}`` both become ``{"loss.w_b": {...}}``
    (CLI overrides like ``space.loss.w_b.high=5`` arrive nested). A leaf is a mapping of ParamSpec
    fields (or anything else, which validation then names)."""
    flat: dict[str, Any] = {}
    for key, value in space.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and not set(value) <= set(ParamSpec.model_fields):
            flat.update(flatten_space(value, name + "."))
        else:
            flat[name] = value
    return flat


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"loss.w_b": 2}`` -> ``{"loss": {"w_b": 2}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def load_sweep(path: str | os.PathLike, overrides: list[str] | None = None) -> tuple[SweepSpec, dict[str, Any]]:
    """The validated sweep and the resolved base training config (a dict), checked before any work:
    every searched key must exist in the Config schema and accept the ends of its range."""
    path = Path(path)
    layers = [read_yaml(path), parse_overrides(list(overrides or []))]
    for layer in layers:  # flat and nested space keys merge key by key
        if isinstance(layer.get("space"), dict):
            layer["space"] = flatten_space(layer["space"])
    data = deep_merge(*layers)
    from .config import format_validation_error
    from pydantic import ValidationError

    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SweepError(format_validation_error(exc, SweepSpec).replace("config key", "sweep key")
                         .replace("invalid config", f"invalid sweep file {str(path)!r}")) from None
    spec.reference()  # length checks
    if spec.base_config:
        base_path = Path(os.path.expanduser(spec.base_config))
        if not base_path.is_absolute():
            base_path = (path.parent / base_path).resolve()
    else:
        base_path = CONFIG_DIR / "demo.yaml"
    base = deep_merge(read_yaml(base_path), spec.base)
    spec._base_given = base
    try:
        base = validate(base).to_dict()
    except ConfigError as exc:
        raise SweepError(f"sweep key 'base' (over {base_path}): {exc}") from None
    check_space(spec.space, base)
    return spec, base


def check_space(space: dict[str, ParamSpec], base: dict[str, Any]) -> None:
    """Validate each searched key at every corner of its range against the Config schema."""
    for key, param in space.items():
        for value in param.corners():
            try:
                validate(deep_merge(base, nest({key: value})))
            except ConfigError as exc:
                raise SweepError(f"sweep key 'space.{key}' (value {value!r}) does not fit the training config: "
                                 f"{str(exc).removeprefix('invalid config:').strip()}") from None


def fingerprint(spec: SweepSpec) -> str:
    """What makes a study the same sweep: space, objectives and the base config as written (not the
    schema's defaults, which a package upgrade may extend; not n_trials or the sampler)."""
    ident = {"space": {k: v.model_dump() for k, v in sorted(spec.space.items())},
             "objectives": spec.objectives.model_dump(), "base": spec._base_given}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# Objectives from a trial's results.json
# ------------------------------------------------------------------------------------------------


def lookup(results: dict[str, Any], dotted: str) -> Any:
    node: Any = results
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def raw_counterpart(metric: str) -> str | None:
    """``action.top1_anonymized`` -> ``action.top1_raw`` (the same metric on raw features)."""
    return metric.replace("_anonymized", "_raw") if "_anonymized" in metric else None


def objective_values(results: dict[str, Any], objectives: ObjectivesSpec) -> dict[str, Any]:
    """The objectives of one trial, which privacy metric gave them, and the raw-feature point."""
    privacy_metric = objectives.privacy
    value = lookup(results, privacy_metric)
    if value is None and objectives.privacy_fallback:
        privacy_metric, value = objectives.privacy_fallback, lookup(results, objectives.privacy_fallback)
    if value is None:
        raise SweepError(f"results hold neither {objectives.privacy!r} nor the fallback "
                         f"{objectives.privacy_fallback!r}; sections present: {sorted(results)}")
    out = {"values": {PRIVACY_KEY: float(value)}, "privacy_metric": privacy_metric, "raw": {}}
    raw = lookup(results, raw_counterpart(privacy_metric) or "")
    out["raw"][PRIVACY_KEY] = None if raw is None else float(raw)
    for metric in objectives.utility:
        v = lookup(results, metric)
        if v is None:
            section = lookup(results, metric.split(".")[0])
            have = sorted(k for k, x in section.items() if isinstance(x, (int, float))) if isinstance(section, dict) else []
            raise SweepError(f"utility metric {metric!r} is not in the results; "
                             f"{metric.split('.')[0]!r} holds {have or 'nothing'}")
        out["values"][metric] = float(v)
        raw = lookup(results, raw_counterpart(metric) or "")
        out["raw"][metric] = None if raw is None else float(raw)
    return out


# ------------------------------------------------------------------------------------------------
# One trial (runs inside a Tune trial)
# ------------------------------------------------------------------------------------------------


def trial_config(base: dict[str, Any], params: dict[str, Any], trial_dir: Path, name: str) -> Config:
    data = deep_merge(base, nest(params))
    data.update(run_name=name, output_dir=str(trial_dir))
    data["ray"] = {**data.get("ray", {}), "storage_path": str(trial_dir / "ray")}
    return validate(data)


def train_and_evaluate(cfg: Config, store_root: str, privacy_store_root: str, manifest: str | None) -> dict:
    """fit -> export -> evaluate, as ``splavu_ray.train.run`` does after its setup; writes results.json."""
    from .adapter import load_adapter
    from .evaluate import evaluate_features
    from .feature_store import FeatureStore
    from .trainer import export_from_result, fit

    t0, out, d = time.time(), cfg.output_path, cfg.data
    out.mkdir(parents=True, exist_ok=True)
    cfg.save()
    result = fit(cfg, store_root, [d.train_split], [d.val_split], manifest_path=manifest)
    if result.error:
        raise RuntimeError(f"training failed: {result.error}")
    exported = export_from_result(result, out)
    best = exported.get("best_adapter") or exported["adapter"]
    adapter = load_adapter(best)
    store = FeatureStore.open(store_root)
    pstore = store if privacy_store_root == store_root else FeatureStore.open(privacy_store_root)
    results = evaluate_features(cfg, adapter, pstore.load(d.privacy_train_split), pstore.load(d.privacy_test_split),
                                store.load(d.train_split), store.load(d.test_split))
    results["run"] = {"run_name": cfg.run_name, "adapter": str(best), "best_epoch": exported["state"]["best_epoch"],
                      "best_val_top1": exported["state"]["best_val_top1"], "feature_store": store_root,
                      "wall_time_s": round(time.time() - t0, 1)}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def run_trial(params: dict[str, Any], ctx: dict[str, Any]) -> None:
    """Tune function trainable: one training run, one final report (the objectives).

    Per-epoch Train metrics are not forwarded to Tune (no TuneReportCallback): they lack the
    objectives, which only exist after evaluation, and multi-objective Optuna reads only the last report.
    """
    import ray.tune

    trial_id = ray.tune.get_context().get_trial_id()
    trial_dir = Path(ctx["output_dir"]) / "trials" / trial_id
    cfg = trial_config(ctx["base"], params, trial_dir, f"trial-{trial_id}")
    t0 = time.time()
    results = train_and_evaluate(cfg, ctx["store"], ctx["privacy_store"], ctx["manifest"])
    obj = objective_values(results, ObjectivesSpec.model_validate(ctx["objectives"]))
    record = {"tune_trial_id": trial_id, "trial_dir": str(trial_dir), "privacy_metric": obj["privacy_metric"],
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
    from .feature_store import FeatureStore

    if spec.feature_store:
        store = FeatureStore.open(spec.feature_store)
        manifest = None
        if cfg.train.mode == "online":
            if cfg.data.dataset == "synthetic":
                raise SweepError("sweep key 'feature_store' with train.mode=online needs base.data.dataset "
                                 "to name the manifest the store was extracted from")
            manifest = cfg.data.dataset
        return {"store": store.root, "privacy_store": store.root, "manifest": manifest}
    from .datasets import resolve_manifests
    from .features import ensure_features

    manifests = resolve_manifests(cfg)
    store = ensure_features(cfg, manifests["main"])
    pstore = store if manifests["privacy"] == manifests["main"] else ensure_features(cfg, manifests["privacy"])
    return {"store": store.root, "privacy_store": pstore.root, "manifest": manifests["main"]}


def run_sweep(spec: SweepSpec, base: dict[str, Any]) -> dict[str, Any]:
    import optuna
    import ray
    import ray.tune
    from optuna.trial import TrialState

    from .train import check_inputs, init_ray

    t0 = time.time()
    base_cfg = validate(base)
    check_inputs(base_cfg)
    out = spec.output_path
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    (out / "base_config.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    study, storage = open_study(spec, fingerprint(spec))
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    remaining = spec.n_trials - done
    print(f"[sweep] study {spec.name!r} ({spec.storage_url}): {done} finished trial(s), {max(remaining, 0)} to run",
          flush=True)
    if remaining > 0:
        init_ray(base_cfg)
        data = prepare_data(spec, base_cfg)
        n_parallel = concurrency(spec, base_cfg, ray.cluster_resources())
        # Seeded by (seed, trials so far): a resumed sweep is reproducible and does not replay the
        # random first generation of the interrupted one.
        sampler = make_sampler(spec.sampler, spec.sampler.seed + len(study.trials))
        searcher = _searcher_class()(
            {k: p.distribution() for k, p in spec.space.items()}, metric=spec.metric_names, mode=spec.directions,
            sampler=sampler, study_name=spec.name, storage=storage)
        ctx = {"output_dir": str(out), "base": base, "objectives": spec.objectives.model_dump(), **data}
        attempt = 1 + len(list((out / "tune").glob("attempt-*"))) if (out / "tune").is_dir() else 1
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
            run_config=ray.tune.RunConfig(name=f"attempt-{attempt:03d}", storage_path=str(out / "tune"), verbose=1),
        )
        grid = tuner.fit()
        for res in grid:
            if res.error:
                print(f"[sweep] a trial failed: {res.error}", file=sys.stderr, flush=True)
    study = optuna.load_study(study_name=spec.name, storage=storage)
    summary = write_outputs(spec, study, out)
    summary["wall_time_s"] = round(time.time() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(format_summary(summary, out), flush=True)
    return summary


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------


def trial_rows(spec: SweepSpec, study) -> list[dict[str, Any]]:
    """One row per trial of the study (every state), objectives under their metric names."""
    rows = []
    names = spec.metric_names
    for t in study.trials:
        rec = t.user_attrs.get("record", {})
        row = {"number": t.number, "state": t.state.name,
               **{n: (t.values[i] if t.values else None) for i, n in enumerate(names)},
               "privacy_metric": rec.get("privacy_metric"),
               **{f"param:{k}": t.params.get(k) for k in spec.space},
               "duration_s": round(t.duration.total_seconds(), 1) if t.duration else None,
               "tune_trial_id": rec.get("tune_trial_id"), "trial_dir": rec.get("trial_dir")}
        row["_raw"] = rec.get("raw", {})
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    cols = [c for c in (rows[0] if rows else {}) if not c.startswith("_")]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def raw_point(rows: list[dict[str, Any]], names: list[str]) -> list[float] | None:
    """The metrics on raw features (the same for every trial up to attacker noise: the median)."""
    point = []
    for n in names:
        vals = [r["_raw"].get(n) for r in rows if r["_raw"].get(n) is not None]
        if not vals:
            return None
        point.append(float(np.median(vals)))
    return point


def write_outputs(spec: SweepSpec, study, out: Path) -> dict[str, Any]:
    names, directions = spec.metric_names, spec.directions
    rows = trial_rows(spec, study)
    done = [r for r in rows if r["state"] == "COMPLETE"]
    values = np.array([[r[n] for n in names] for r in done], dtype=float).reshape(len(done), len(names))
    mask = pareto.pareto_mask(values, directions) if len(done) else np.zeros(0, bool)
    front_numbers = {r["number"] for r, m in zip(done, mask) if m}
    for r in rows:
        r["pareto"] = r["number"] in front_numbers
    _write_csv(out / "trials.csv", rows)
    front = sorted((r for r in done if r["pareto"]), key=lambda r: r[PRIVACY_KEY])
    _write_csv(out / "pareto.csv", front)

    reference, ideal = spec.reference()
    hv = pareto.hypervolume(values, directions, reference) if len(done) else 0.0
    nhv = pareto.normalized_hypervolume(values, directions, reference, ideal) if len(done) else 0.0
    raw = raw_point(done, names)
    raw_hv = pareto.normalized_hypervolume(np.array([raw]), directions, reference, ideal) if raw else None
    exported = export_frontier(front, out)
    used: dict[str, int] = {}
    for r in done:
        used[r["privacy_metric"]] = used.get(r["privacy_metric"], 0) + 1
    plot_front(out / "pareto.png", spec, values, mask, raw, spec.name)
    return {
        "study": spec.name, "storage": spec.storage_url, "sampler": spec.sampler.model_dump(),
        "n_trials": len(done), "n_failed": sum(r["state"] == "FAIL" for r in rows), "n_pareto": len(front),
        "objectives": [{"name": n, "direction": d} for n, d in zip(names, directions)],
        "privacy_metric": {"requested": spec.objectives.privacy, "fallback": spec.objectives.privacy_fallback,
                           "trials_by_metric": used},
        "reference_point": dict(zip(names, reference)), "ideal_point": dict(zip(names, ideal)),
        "hypervolume": hv,
        "normalized_hypervolume": nhv,
        "normalized_hypervolume_definition": "hypervolume / volume of the box between ideal_point and "
                                             "reference_point (fraction of that box the front dominates)",
        "raw_point": dict(zip(names, raw)) if raw else None,
        "raw_point_normalized_hypervolume": raw_hv,
        "pareto_trials": [{"number": r["number"], **{n: r[n] for n in names},
                           **{k: r[f"param:{k}"] for k in spec.space}, "adapter": exported.get(r["number"])}
                          for r in front],
    }


def export_frontier(front: list[dict[str, Any]], out: Path) -> dict[int, str]:
    """Copy each frontier trial's best adapter (and results.json) to pareto_adapters/trial_NNNN."""
    dest_root = out / "pareto_adapters"
    shutil.rmtree(dest_root, ignore_errors=True)  # the front can change when a sweep continues
    paths = {}
    for r in front:
        src = Path(r["trial_dir"] or "")
        adapter = next((src / n for n in ("best_adapter", "adapter") if (src / n / "adapter.safetensors").is_file()), None)
        if adapter is None:
            print(f"[sweep] frontier trial {r['number']} has no adapter under {src}", file=sys.stderr)
            continue
        dest = dest_root / f"trial_{r['number']:04d}"
        shutil.copytree(adapter, dest)
        if (src / "results.json").is_file():
            shutil.copy2(src / "results.json", dest / "results.json")
        paths[r["number"]] = str(dest)
    return paths


def plot_front(path: Path, spec: SweepSpec, values: np.ndarray, mask: np.ndarray, raw: list[float] | None,
               title: str) -> None:
    """Privacy (x, lower is better) against each utility metric (y): all trials, the frontier
    (a step line in 2-D) and the raw-feature point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    utils = spec.objectives.utility
    fig, axes = plt.subplots(1, len(utils), figsize=(5.5 * len(utils), 4.5), squeeze=False)
    for j, metric in enumerate(utils, start=1):
        ax = axes[0][j - 1]
        if len(values):
            ax.scatter(values[~mask, 0], values[~mask, j], c="0.6", s=22, label="trials")
            f = values[mask][np.argsort(values[mask][:, 0])]
            ax.scatter(f[:, 0], f[:, j], c="tab:red", s=36, zorder=3, label="Pareto front")
            if len(utils) == 1:
                ax.step(f[:, 0], f[:, 1], where="post", c="tab:red", lw=1.2)
        if raw:
            ax.scatter([raw[0]], [raw[j]], marker="*", s=160, c="k", zorder=4, label="raw features")
        ax.set_xlabel(f"privacy: {PRIVACY_KEY} (lower = more private)")
        ax.set_ylabel(f"utility: {metric}")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"sweep {title}: {len(values)} trials, {int(mask.sum())} on the front")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_summary(s: dict[str, Any], out: Path) -> str:
    lines = [f"[sweep] {s['n_trials']} trials ({s['n_failed']} failed), {s['n_pareto']} on the Pareto front; "
             f"hypervolume {s['hypervolume']:.2f} (reference {s['reference_point']}), "
             f"normalised {s['normalized_hypervolume']:.4f}"]
    for t in s["pareto_trials"]:
        vals = ", ".join(f"{k} {t[k]:.2f}" for k in (o["name"] for o in s["objectives"]))
        lines.append(f"  trial {t['number']}: {vals}")
    lines.append(f"outputs: {out}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m splavu_ray.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="sweep file, e.g. sweeps/quick.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the sweep file, e.g. n_trials=4 "
                        "base.optim.epochs=2")
    args = parser.parse_args(argv)
    try:
        spec, base = load_sweep(args.sweep, args.overrides)
        run_sweep(spec, base)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
