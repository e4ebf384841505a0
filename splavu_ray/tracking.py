"""Experiment tracking: MLflow runs of training runs and sweeps, TensorBoard event files of the epochs.

Off unless ``tracking.mlflow_uri`` (or ``tracking.tensorboard``) is set; docs/tracking.md says how to use
it. MLflow is optional (``pip install 'splavu_ray[tracking]'``): it is imported inside the functions here,
so the package imports and trains without it while tracking is off.

A training run is one MLflow run. The driver opens it before any training (:meth:`MlflowTracker.open`
checks the server first, so a wrong URI or a server that is down fails in seconds, not after training),
rank 0 of the Ray Train workers logs each epoch's numeric metrics to it (``step`` = the epoch number, see
:class:`EpochLogger`), and after evaluation the driver logs results.json's numbers and the run folder's
files and ends it (:meth:`MlflowTracker.finish`). A sweep is a parent run with one child run per trial
(tag ``mlflow.parentRunId``). Only MLflow's public client API (``mlflow.MlflowClient``) is used.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping

from .config import Config, ConfigError
from .run_folder import BEST_ADAPTER, LATEST_ADAPTER, RunFolder

PARENT_TAG = "mlflow.parentRunId"
# MLflow's limits: one log_batch call takes at most 1000 metrics and 100 params; a param value 6000 chars.
_METRICS_PER_CALL, _PARAMS_PER_CALL, _PARAM_VALUE_MAX = 1000, 100, 6000
_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")  # MLflow names allow letters, digits, _ - . / and spaces


class TrackingError(ConfigError):
    """Tracking is on but cannot work (MLflow missing, server unreachable); found before any training."""


# ------------------------------------------------------------------------------------------------
# Names and values
# ------------------------------------------------------------------------------------------------


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1e-3}}`` -> ``{"optim.lr": 1e-3}`` (lists and empty sections are values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def mlflow_name(key: str) -> str:
    """A metric or param name MLflow accepts: other characters become ``_``."""
    return _BAD_NAME_CHARS.sub("_", key)


def numeric(tree: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a nested dict (results.json, an epoch's metrics) under dotted, MLflow-safe names.
    Booleans, strings, lists and None are left out."""
    return {mlflow_name(k): float(v) for k, v in flatten(tree).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def params(tree: Mapping[str, Any]) -> dict[str, str]:
    """A nested dict (a resolved config, a sweep file) as MLflow params: dotted names, strings (non-strings
    as JSON, cut at MLflow's 6000 characters)."""
    return {mlflow_name(k): (v if isinstance(v, str) else json.dumps(v))[:_PARAM_VALUE_MAX]
            for k, v in flatten(tree).items()}


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("splavu_ray")
    except PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------------------------------
# MLflow
# ------------------------------------------------------------------------------------------------


def _client(uri: str):
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise TrackingError("config key 'tracking.mlflow_uri' is set but MLflow is not installed: "
                            "pip install 'splavu_ray[tracking]' (or unset tracking.mlflow_uri)") from None
    return MlflowClient(tracking_uri=uri)


def check_server(uri: str, timeout: float = 10.0) -> None:
    """Fail with a clear message when an http(s) tracking server does not answer (MLflow's own client
    would retry a refused connection for minutes). Stores (file:, sqlite:, databases) are checked by
    opening the experiment."""
    if not uri.lower().startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # a proxy in front of the server without /health: opening the experiment tells
            return
        reason = f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise TrackingError(f"config key 'tracking.mlflow_uri': the MLflow tracking server at {uri} does not answer "
                        f"({reason}); start one (e.g. `mlflow server --host 127.0.0.1 --port 5000`, see "
                        "docs/tracking.md) or unset tracking.mlflow_uri")


class MlflowTracker:
    """An MLflow tracking URI and experiment, and what a run logs there (through ``mlflow.MlflowClient``)."""

    def __init__(self, uri: str, experiment_id: str | None = None):
        self.uri, self.experiment_id = uri, experiment_id
        self.client = _client(uri)

    @classmethod
    def open(cls, uri: str, experiment: str) -> "MlflowTracker":
        """Check the server, then get (or create) the experiment: every failure here is a TrackingError
        raised before any work."""
        check_server(uri)
        try:
            tracker = cls(uri)
            exp = tracker.client.get_experiment_by_name(experiment)
            if exp is None:
                try:
                    tracker.experiment_id = tracker.client.create_experiment(experiment)
                except Exception:  # noqa: BLE001 - another trial created it meanwhile
                    exp = tracker.client.get_experiment_by_name(experiment)
                    if exp is None:
                        raise
            if exp is not None:
                if exp.lifecycle_stage != "active":
                    raise TrackingError(f"config key 'tracking.experiment': the MLflow experiment {experiment!r} "
                                        f"at {uri} is deleted; restore it or pick another name")
                tracker.experiment_id = exp.experiment_id
        except TrackingError:
            raise
        except Exception as exc:  # noqa: BLE001 - any refusal (auth, bad store) is the user's setup
            raise TrackingError(f"config key 'tracking.mlflow_uri': cannot use the MLflow experiment {experiment!r} "
                                f"at {uri}: {type(exc).__name__}: {str(exc)[:500]}") from None
        return tracker

    @classmethod
    def of(cls, cfg: Config) -> "MlflowTracker | None":
        """The tracker of a run's config, checked; None when ``tracking.mlflow_uri`` is unset."""
        t = cfg.tracking
        return cls.open(t.mlflow_uri, t.experiment) if t.mlflow_uri else None

    # -- runs ------------------------------------------------------------------------------------------
    def start_run(self, name: str, config: Mapping[str, Any], *, parent: str | None = None,
                  resume: str | None = None, tags: Mapping[str, str] | None = None) -> str:
        """A new run named ``name`` with ``config`` (nested) as its params; its id.

        ``parent``: the sweep's run (the new run is its child). ``resume``: the run an earlier attempt of the
        same run opened (read from its checkpoint): it is continued (set RUNNING again, params kept) when it
        still exists in this experiment, else a new run starts."""
        if resume:
            try:
                old = self.client.get_run(resume)
            except Exception:  # noqa: BLE001 - deleted, or on another server: start afresh
                old = None
            if old is not None and old.info.experiment_id == self.experiment_id and old.info.lifecycle_stage == "active":
                self.client.update_run(resume, status="RUNNING")
                return resume
            print(f"[splavu] MLflow run {resume} of the resumed run is not in experiment {self.experiment_id} at "
                  f"{self.uri}; logging to a new run", flush=True)
        all_tags = {"run_name": name, "splavu_ray.version": package_version(), **(tags or {})}
        if parent:
            all_tags[PARENT_TAG] = parent
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id
        self.log_params(run_id, params(config))
        return run_id

    def log_params(self, run_id: str, values: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in values.items()]
        for i in range(0, len(items), _PARAMS_PER_CALL):
            self.client.log_batch(run_id, params=items[i:i + _PARAMS_PER_CALL])

    def log_metrics(self, run_id: str, values: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(mlflow_name(k), float(v), now, int(step)) for k, v in values.items()]
        for i in range(0, len(items), _METRICS_PER_CALL):
            self.client.log_batch(run_id, metrics=items[i:i + _METRICS_PER_CALL])

    def log_epoch(self, run_id: str, metrics: Mapping[str, Any], epoch: int) -> None:
        """One epoch's numeric metrics at ``step=epoch`` (the epoch number itself is the step)."""
        self.log_metrics(run_id, {k: v for k, v in numeric(metrics).items() if k != "epoch"}, step=epoch)

    def log_files(self, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
        """Files (as themselves) and folders (their contents, under their own name) that exist."""
        for path in paths:
            path = Path(path)
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path=path.name if artifact_path is None
                                          else f"{artifact_path}/{path.name}")
            elif path.is_file():
                self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status)

    def finish(self, run_id: str, results: Mapping[str, Any], files: list[Path], end: bool = True) -> bool:
        """After the work: the numbers of ``results`` (nested, e.g. results.json) at step 0, ``files`` as
        artifacts, and (``end``) the run ended FINISHED. The work is done and its files are written, so a
        failure here warns instead of failing the run; False then."""
        try:
            self.log_metrics(run_id, numeric(results))
            self.log_files(run_id, files)
            if end:
                self.end_run(run_id)
            return True
        except Exception as exc:  # noqa: BLE001 - the results are on disk; MLflow only misses them
            print(f"[splavu] WARNING: could not log to MLflow run {run_id} at {self.uri} ({type(exc).__name__}: "
                  f"{str(exc)[:300]}); the files are on disk: {[str(f) for f in files]}", flush=True)
            return False


def run_artifacts(folder: RunFolder) -> list[Path]:
    """What a training run's MLflow run keeps as artifacts: the adapters, config, results (json, table,
    plots) and report page (those that exist are logged)."""
    return [folder.adapter(BEST_ADAPTER), folder.adapter(LATEST_ADAPTER), folder.config, folder.results_json,
            folder.results_table, folder.root / "report.html", *sorted(folder.root.glob("*.png"))]


SWEEP_ARTIFACTS = ("sweep.yaml", "base_config.yaml", "trials.csv", "pareto.csv", "summary.json", "pareto.png",
                   "report.html")


# ------------------------------------------------------------------------------------------------
# The epochs, on rank 0
# ------------------------------------------------------------------------------------------------


class EpochLogger:
    """Rank 0's per-epoch sink: the driver's MLflow run (``run_id``; None = none) and TensorBoard event
    files (``tensorboard_dir``; None = none, tensorboardX comes with ray[train]). A sink that fails warns
    once and is dropped: the server was checked before training, and a lost metric must not stop a run."""

    def __init__(self, mlflow_uri: str | None, run_id: str | None, tensorboard_dir: str | None = None):
        self.run_id = run_id
        self.mlflow = MlflowTracker(mlflow_uri) if mlflow_uri and run_id else None
        self.tb = None
        if tensorboard_dir:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(tensorboard_dir)

    def log(self, metrics: Mapping[str, Any], epoch: int) -> None:
        if self.mlflow is not None:
            try:
                self.mlflow.log_epoch(self.run_id, metrics, epoch)
            except Exception as exc:  # noqa: BLE001
                print(f"[splavu] WARNING: MLflow logging stopped at epoch {epoch} ({type(exc).__name__}: "
                      f"{str(exc)[:300]}); training goes on", flush=True)
                self.mlflow = None
        if self.tb is not None:
            for key, value in numeric(metrics).items():
                if key != "epoch":
                    self.tb.add_scalar(key, value, epoch)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
