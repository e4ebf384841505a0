"""The run path: features -> fit -> export -> evaluate -> files, the one way every workflow trains and scores.

``python -m splavu_ray.train`` runs :func:`run` (the whole path); a sweep trial and the seen/unseen
experiment run :func:`train_and_evaluate` on feature stores prepared once for all their runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError
from ..data.feature_store import FeatureStore
from ..data.sources import resolve_manifests
from ..evaluation.suite import EvalPlan, plan_evaluation, report_table, write_outputs
from ..evaluation.task import EvalInputError
from ..models.adapter import AnonymizingAdapter, load_adapter
from ..progress import time_summary
from ..run_folder import BEST_ADAPTER, LATEST_ADAPTER, RunFolder
from ..tracking import MlflowTracker, run_artifacts
from ..training.preflight import check_resume
from .deepspeed_config import deepspeed_config
from .evaluation_task import evaluate_in_task
from .feature_job import ensure_features, ensure_stores
from .pixel_run import train_and_evaluate_pixel
from .session import connect
from .torch_trainer import export_from_result, fit, last_tracking_run


@dataclass
class TrainedAdapter:
    adapter: AnonymizingAdapter
    path: Path  # the exported folder (best_adapter, or adapter when no epoch was selected)
    state: dict[str, Any]  # the loop's final state: best_epoch, best_val_top1, history
    timing: dict[str, Any] = field(default_factory=dict)  # where training's wall time went (results.json "timing")


def fit_and_export(cfg: Config, folder: RunFolder, feature_store: str | None,
                   manifest_path: str | None = None, tracking_run_id: str | None = None) -> TrainedAdapter:
    """Train with Ray Train (or resume the same run_name), copy the adapters into the folder, load the kept one.
    ``tracking_run_id``: the MLflow run the workers log each epoch to."""
    d = cfg.data
    t0 = time.time()
    result = fit(cfg, feature_store, [d.train_split], [d.val_split], manifest_path=manifest_path,
                 tracking_run_id=tracking_run_id)
    if result.error:
        raise RuntimeError(f"training failed: {result.error}")
    t_fit = time.time()
    exported = export_from_result(result, folder)
    path = exported.get(BEST_ADAPTER) or exported[LATEST_ADAPTER]
    trained = TrainedAdapter(load_adapter(path), path, exported["state"])
    trained.timing = training_timing(t_fit - t0, exported["state"].get("timing") or {}, time.time() - t_fit)
    return trained


def training_timing(fit_s: float, worker: dict[str, Any], export_s: float) -> dict[str, Any]:
    """Where a TorchTrainer.fit's wall time went: the worker's own account (its setup: data, model, optimizer or
    DeepSpeed engine; the epochs; checkpoint writes and report round trips, up to its last checkpoint) and the
    rest, Ray Train starting and stopping the worker group (process start, imports, the last report)."""
    inside = sum(float(worker.get(k, 0.0)) for k in ("setup_s", "epochs_s", "checkpoints_reports_s"))
    return {"stepper": worker.get("stepper"), "fit_s": round(fit_s, 2),
            "ray_train_start_stop_s": round(max(fit_s - inside, 0.0), 2),
            **{f"worker_{k}": round(float(worker[k]), 2) for k in ("setup_s", "epochs_s", "checkpoints_reports_s")
               if k in worker},
            "export_s": round(export_s, 2)}


def train_and_evaluate(cfg: Config, folder: RunFolder, plan: EvalPlan, stores: dict[str, FeatureStore],
                       feature_store: str | None, manifest_path: str | None = None,
                       started: float | None = None, phases: dict[str, float] | None = None,
                       tracking_parent: str | None = None, tracker: MlflowTracker | None = None) -> dict:
    """fit -> export -> evaluate the planned tasks -> results.json, results.md and plots in ``folder``.

    Training runs on Ray Train's workers; evaluation in a Ray task with one worker's resources
    (:func:`splavu_ray.distributed.evaluation_task.evaluate_in_task`), never on this driver's node unless Ray
    places it there; results.json ``timing.evaluation_task`` records where it ran.

    ``started``/``phases``: when the caller's run began and what it spent before (e.g. on features), so
    results.json's wall time and phases cover the whole run.

    With ``tracking.mlflow_uri`` set the run is an MLflow run (splavu_ray.tracking, docs/tracking.md), opened
    before training (the server checked first; ``tracker``: one the caller opened already) as a child of
    ``tracking_parent`` (a sweep's run) or, on a resume, the run the checkpoint names; the workers log each
    epoch to it, then it gets results.json's numbers and the run folder's files and ends FINISHED (FAILED
    when training or evaluation raises)."""
    tracker = tracker or MlflowTracker.of(cfg)
    if tracker is None:
        return _train_and_evaluate(cfg, folder, plan, stores, feature_store, manifest_path, started, phases)
    run_id = tracker.start_run(cfg.run_name, cfg.to_dict(), parent=tracking_parent,
                               resume=last_tracking_run(RunFolder.of(cfg).checkpoints, cfg.run_name),
                               tags={"output_dir": str(folder.root)})
    print(f"[splavu] MLflow run {run_id} (experiment {tracker.experiment_id}) at {tracker.uri}", flush=True)
    try:
        results = _train_and_evaluate(cfg, folder, plan, stores, feature_store, manifest_path, started, phases,
                                      tracking_run_id=run_id)
    except BaseException as exc:
        try:
            tracker.end_run(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        except Exception:  # noqa: BLE001 - the run's own error is the one to see
            pass
        raise
    tracker.finish(run_id, results, run_artifacts(folder))
    return results


def _train_and_evaluate(cfg: Config, folder: RunFolder, plan: EvalPlan, stores: dict[str, FeatureStore],
                        feature_store: str | None, manifest_path: str | None = None, started: float | None = None,
                        phases: dict[str, float] | None = None, tracking_run_id: str | None = None) -> dict:
    t0 = time.time()
    folder.make()
    cfg.save(folder.config)
    trained = fit_and_export(cfg, folder, feature_store, manifest_path, tracking_run_id)
    state = trained.state
    print(f"[splavu] adapter exported to {trained.path} (best epoch {state['best_epoch']}, "
          f"val top-1 {state['best_val_top1']:.2f})", flush=True)
    t_trained = time.time()
    results = evaluate_in_task(cfg, trained.adapter, plan, stores, folder)
    main = stores.get(plan.manifests.get("action", ""))
    results["run"] = {"run_name": cfg.run_name, "adapter": str(trained.path), "best_epoch": state["best_epoch"],
                      "best_val_top1": state["best_val_top1"], "feature_store": feature_store,
                      "backbone": main.meta.get("backbone") if main else None,
                      "adapter_parameters": trained.adapter.num_parameters(),
                      "wall_time_s": round(time.time() - (started or t0), 1),
                      # where the wall time went: Ray Train (start-up included) and evaluation, after the caller's
                      "phases_s": {**(phases or {}), "training": round(t_trained - t0, 1),
                                   "evaluation": round(time.time() - t_trained, 1)}}
    # The same wall time, finer: Ray Train start-up, the worker's setup / epochs / reports, evaluation per task.
    results["timing"] = {**{f"{k}_s": v for k, v in (phases or {}).items()}, "training": trained.timing,
                         "evaluation_s": {**results.get("timing_s", {}), "total": results["run"]["phases_s"]["evaluation"]},
                         "total_s": results["run"]["wall_time_s"],
                         "evaluation_task": results.get("timing", {}).get("evaluation_task")}
    if tracking_run_id:
        results["run"]["mlflow_run_id"] = tracking_run_id
    write_outputs(results, folder, cfg.eval.plots, history=state["history"])
    return results


def run(cfg: Config) -> dict:
    """``python -m splavu_ray.train``: check, extract features, train, evaluate, print the table."""
    t_start = time.time()
    folder = RunFolder.of(cfg)
    check_resume(cfg)
    tracker = MlflowTracker.of(cfg)  # tracking on: the server answers before any work (None when off)
    folder.make().deepspeed_config.write_text(json.dumps(deepspeed_config(cfg, cfg.scaling.num_workers), indent=2))
    connect(cfg)

    manifests = resolve_manifests(cfg)
    try:  # evaluation labels are checked before any work, not after training
        plan = plan_evaluation(cfg, manifests)
    except EvalInputError as exc:
        raise ConfigError(str(exc)) from None
    # The feature store serves cached training and, in both modes, the final evaluation.
    store = ensure_features(cfg, manifests["main"])
    stores = {manifests["main"]: store, **ensure_stores(cfg, [manifests["privacy"], *plan.manifests.values()])}
    t_features = time.time()
    print(f"[splavu] features ready in {t_features - t_start:.0f}s: {store.root}", flush=True)

    if cfg.train.anonymizer == "pixel_unet":  # f_P, scored like a pixel baseline (distributed/pixel_run.py)
        results = train_and_evaluate_pixel(cfg, folder, plan, stores, manifests["main"], started=t_start,
                                           phases={"features": round(t_features - t_start, 1)})
        print("\n" + folder.results_table.read_text() + f"\nresults: {folder.results_json}", flush=True)
        print(time_summary(results["run"]["phases_s"], results.get("timing_s"), results["run"]["wall_time_s"]),
              flush=True)
        return results
    results = train_and_evaluate(cfg, folder, plan, stores, store.root, manifests["main"], started=t_start,
                                 phases={"features": round(t_features - t_start, 1)}, tracker=tracker)
    print("\n" + report_table(results) + f"\n\nresults: {folder.results_json}\nreport: {folder.report}", flush=True)
    print(time_summary(results["run"]["phases_s"], results.get("timing_s"), results["run"]["wall_time_s"]), flush=True)
    return results
