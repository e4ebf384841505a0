"""A privacy/utility sweep, as written in a sweep file: the searched keys, the objectives, the base config.

Plain Python (pydantic): validated before any work (every searched key is checked against the training
config at both ends of its range), and turned into objectives from a trial's results.json. The sweep
runner (Ray Tune + Optuna) is splavu_ray.distributed.tune; the files a finished study produces are
splavu_ray.search.frontier.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from ..config import (
    CONFIG_DIR,
    Config,
    ConfigError,
    _Section,
    deep_merge,
    format_validation_error,
    parse_overrides,
    read_yaml,
    validate,
)
from ..run_folder import RunFolder, is_remote, staging_folder

# The privacy objective is the worst case over attackers when the privacy task reports it; older results
# only carry the single MLP attacker's cMAP. The fallback is explicit and recorded per trial.
PRIVACY_METRIC = "privacy.cmap_worst_anonymized"
PRIVACY_FALLBACK = "privacy.cmap_anonymized"
PRIVACY_KEY = "privacy_cmap"  # the name of the privacy objective in Tune results and the outputs
RECORD_KEY = "sweep_record"
# Sections of results.json a trial computes (evaluate_features: privacy leakage and action top-1).
EVALUATED_SECTIONS = ("privacy", "action")
# Keys the sweep sets per trial: sweeping them would break the trial layout.
MANAGED_KEYS = ("run_name", "output_dir", "ray.storage_path", "ray.address", "eval.score_on")
# Every trial is scored on the selection split (train and val only; splavu_ray.evaluation.selection):
# the objectives choose, so they never read test. Score a chosen trial on test with the evaluate command.
TRIAL_SCORE_ON = "val"


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
    """How many trials at once. A trial's driver holds one ``splavu_driver`` and no CPU (it runs on the head);
    its Train workers and its evaluation task hold ``base.scaling``'s CPUs/GPUs."""

    max_concurrent: int | None = Field(None, ge=1, description="None: as many trials as the cluster holds at its "
                                       "maxima (the autoscaler's node types, else the nodes up now)")

    @model_validator(mode="before")
    @classmethod
    def _no_trial_cpus(cls, data):
        if isinstance(data, dict) and "trial_cpus" in data:
            raise ValueError("'trial_cpus' is gone: a trial's driver holds one splavu_driver and no CPU (it runs on "
                             "the head), its evaluation runs in a Ray task with base.scaling's resources; drop the "
                             "key (docs/sweeps.md)")
        return data


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
    def remote_output(self) -> str | None:
        """``output_dir`` when it is an object-store URI (the sweep then works in a local staging folder and
        publishes it there), else None."""
        return self.output_dir.rstrip("/") if is_remote(self.output_dir) else None

    @property
    def output_path(self) -> Path:
        """The sweep's local folder: ``output_dir``, or its staging folder when ``output_dir`` is a URI."""
        if self.remote_output:
            return staging_folder(self.remote_output)
        return Path(os.path.expanduser(self.output_dir or f"outputs/sweeps/{self.name}")).resolve()

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{RunFolder(self.output_path).sweep_file('optuna.db')}"

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
    if (base.get("eval") or {}).get("score_on", TRIAL_SCORE_ON) != TRIAL_SCORE_ON:
        raise SweepError("sweep key 'base.eval.score_on': trials are always scored on the selection split (val); "
                         "score a chosen trial on test with `python -m splavu_ray.evaluate`")
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
    schema's defaults, which a package upgrade may extend; not n_trials, the sampler, or where it is tracked)."""
    base = {k: v for k, v in spec._base_given.items() if k != "tracking"}
    ident = {"space": {k: v.model_dump() for k, v in sorted(spec.space.items())},
             "objectives": spec.objectives.model_dump(), "base": base}
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


def trials_location(spec: SweepSpec, base: dict[str, Any]) -> str | None:
    """Where the trials' files live in object storage: ``<storage_path>/<sweep name>/trials`` (one folder per
    trial id) when the base's ``ray.storage_path`` is a URI, else ``<output_dir>/trials`` when the sweep's
    ``output_dir`` is one; None when both are local (the trials then live in ``output_dir/trials``)."""
    storage = (base.get("ray") or {}).get("storage_path")
    if is_remote(storage):
        return f"{storage.rstrip('/')}/{spec.name}/trials"
    return f"{spec.remote_output}/trials" if spec.remote_output else None


def trial_config(base: dict[str, Any], params: dict[str, Any], folder: RunFolder, name: str) -> Config:
    """One trial's training config: the base, the sampled parameters, and the trial's own run folder."""
    data = deep_merge(base, nest(params))
    data.update(run_name=name, output_dir=str(folder.root))
    data["eval"] = {**data.get("eval", {}), "score_on": TRIAL_SCORE_ON}
    data["ray"] = {**data.get("ray", {}), "storage_path": folder.storage}
    return validate(data)
