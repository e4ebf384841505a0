"""The run path: features -> fit -> export -> evaluate -> files, the one way every workflow trains and scores.

``python -m splavu_ray.train`` runs :func:`run` (the whole path); a sweep trial and the seen/unseen
experiment run :func:`train_and_evaluate` on feature stores prepared once for all their runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError
from ..data.feature_store import FeatureStore
from ..data.sources import resolve_manifests
from ..evaluation.suite import EvalPlan, evaluate_run, plan_evaluation, report_table, write_outputs
from ..evaluation.task import EvalInputError
from ..models.adapter import AnonymizingAdapter, load_adapter
from ..run_folder import BEST_ADAPTER, LATEST_ADAPTER, RunFolder
from ..training.preflight import check_resume
from .deepspeed_config import deepspeed_config
from .feature_job import ensure_features, ensure_stores
from .session import connect
from .torch_trainer import export_from_result, fit


@dataclass
class TrainedAdapter:
    adapter: AnonymizingAdapter
    path: Path  # the exported folder (best_adapter, or adapter when no epoch was selected)
    state: dict[str, Any]  # the loop's final state: best_epoch, best_val_top1, history


def fit_and_export(cfg: Config, folder: RunFolder, feature_store: str | None,
                   manifest_path: str | None = None) -> TrainedAdapter:
    """Train with Ray Train (or resume the same run_name), copy the adapters into the folder, load the kept one."""
    d = cfg.data
    result = fit(cfg, feature_store, [d.train_split], [d.val_split], manifest_path=manifest_path)
    if result.error:
        raise RuntimeError(f"training failed: {result.error}")
    exported = export_from_result(result, folder)
    path = exported.get(BEST_ADAPTER) or exported[LATEST_ADAPTER]
    return TrainedAdapter(load_adapter(path), path, exported["state"])


def train_and_evaluate(cfg: Config, folder: RunFolder, plan: EvalPlan, stores: dict[str, FeatureStore],
                       feature_store: str | None, manifest_path: str | None = None,
                       started: float | None = None, phases: dict[str, float] | None = None) -> dict:
    """fit -> export -> evaluate the planned tasks -> results.json, results.md and plots in ``folder``.

    ``started``/``phases``: when the caller's run began and what it spent before (e.g. on features), so
    results.json's wall time and phases cover the whole run."""
    t0 = time.time()
    folder.make()
    cfg.save(folder.config)
    trained = fit_and_export(cfg, folder, feature_store, manifest_path)
    state = trained.state
    print(f"[splavu] adapter exported to {trained.path} (best epoch {state['best_epoch']}, "
          f"val top-1 {state['best_val_top1']:.2f})", flush=True)
    t_trained = time.time()
    results = evaluate_run(cfg, trained.adapter, plan, stores)
    main = stores.get(plan.manifests.get("action", ""))
    results["run"] = {"run_name": cfg.run_name, "adapter": str(trained.path), "best_epoch": state["best_epoch"],
                      "best_val_top1": state["best_val_top1"], "feature_store": feature_store,
                      "backbone": main.meta.get("backbone") if main else None,
                      "adapter_parameters": trained.adapter.num_parameters(),
                      "wall_time_s": round(time.time() - (started or t0), 1),
                      # where the wall time went: Ray Train (start-up included) and evaluation, after the caller's
                      "phases_s": {**(phases or {}), "training": round(t_trained - t0, 1),
                                   "evaluation": round(time.time() - t_trained, 1)}}
    write_outputs(results, folder, cfg.eval.plots)
    return results


def run(cfg: Config) -> dict:
    """``python -m splavu_ray.train``: check, extract features, train, evaluate, print the table."""
    t_start = time.time()
    folder = RunFolder.of(cfg)
    check_resume(cfg)
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

    results = train_and_evaluate(cfg, folder, plan, stores, store.root, manifests["main"], started=t_start,
                                 phases={"features": round(t_features - t_start, 1)})
    print("\n" + report_table(results) + f"\n\nresults: {folder.results_json}", flush=True)
    return results
