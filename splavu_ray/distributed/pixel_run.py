"""The run path of a learned pixel anonymizer (``train.anonymizer=pixel_unet``): fit f_P -> export -> evaluate.

Training is the same Ray Train run as f_A's (:func:`splavu_ray.distributed.torch_trainer.fit`, online mode, the
worker puts f_P where f_A stands; splavu_ray.distributed.pixel_source). f_P changes the frames, so it is
evaluated like a pixel baseline (splavu_ray.evaluation.baselines): the frames of every evaluation split go
through f_P and the encoder into a feature store of their own (``data.pixel.transform=learned``, keyed by
the weights' sha256), and every planned task runs on them with f_A the identity, as on the raw store. The
run's results.json holds the raw tasks and, under ``baselines``, the f_P row; results.md and baselines.md the
two rows side by side (there is no anonymized-by-f_A row: no f_A trained).
"""

from __future__ import annotations

import json
import time

from ..config import Config
from ..data.feature_store import FeatureStore
from ..evaluation.baselines import (
    LEARNED_ROW,
    PLOT,
    TABLE,
    baseline_row,
    comparison_plot,
    comparison_table,
    pixel_config,
)
from ..evaluation.suite import EvalPlan, table_columns
from ..models.adapter import AnonymizingAdapter
from ..run_folder import BEST_PIXEL_ANONYMIZER, LATEST_PIXEL_ANONYMIZER, RunFolder
from .evaluation_task import evaluate_in_task
from .feature_job import ensure_stores
from .torch_trainer import export_from_result, fit


def train_and_evaluate_pixel(cfg: Config, folder: RunFolder, plan: EvalPlan, stores: dict[str, FeatureStore],
                             manifest_path: str, started: float | None = None,
                             phases: dict[str, float] | None = None) -> dict:
    """fit f_P -> export best/last into ``folder`` -> raw and f_P rows of every planned task -> files."""
    t0 = time.time()
    folder.make()
    cfg.save(folder.config)
    d = cfg.data
    result = fit(cfg, None, [d.train_split], [d.val_split], manifest_path=manifest_path)
    if result.error:
        raise RuntimeError(f"training failed: {result.error}")
    t_fit = time.time()
    exported = export_from_result(result, folder)
    path = exported.get(BEST_PIXEL_ANONYMIZER) or exported[LATEST_PIXEL_ANONYMIZER]
    state = exported["state"]
    print(f"[splavu] pixel anonymizer exported to {path} (best epoch {state['best_epoch']}, "
          f"val top-1 {state['best_val_top1']:.2f})", flush=True)
    t_trained = time.time()

    main = stores[plan.manifests["action"]] if "action" in plan.manifests else next(iter(stores.values()))
    identity = AnonymizingAdapter(int(main.meta["dim"]), "mlp", layers=1)  # zero-initialised: the identity
    results = evaluate_in_task(cfg, identity, plan, stores, folder)
    lcfg = pixel_config(cfg, "learned", str(folder.root / "baselines" / "learned"), anonymizer=str(path),
                        tasks=plan.tasks)
    print(f"[splavu] extracting features of f_P-anonymized frames ({LEARNED_ROW})", flush=True)
    t_lfeat = time.time()
    lstores = ensure_stores(lcfg, list(plan.manifests.values()))
    t_leval = time.time()
    learned = evaluate_in_task(lcfg, identity, plan, lstores, RunFolder.of(lcfg))
    learned["run"] = {"baseline": "learned", "pixel_anonymizer": str(path)}
    RunFolder.of(lcfg).make().results_json.write_text(json.dumps(learned, indent=2))

    columns = table_columns()
    results["baselines"] = {LEARNED_ROW: baseline_row(learned, columns)}
    results["run"] = {"run_name": cfg.run_name, "anonymizer": "pixel_unet", "pixel_anonymizer": str(path),
                      "best_epoch": state["best_epoch"], "best_val_top1": state["best_val_top1"],
                      "learned_feature_store": {m: s.root for m, s in lstores.items()},
                      "backbone": main.meta.get("backbone"),
                      "pixel_anonymizer_parameters": json.loads((path / "pixel_anonymizer.json").read_text())[
                          "parameters"],
                      "wall_time_s": round(time.time() - (started or t0), 1),
                      "phases_s": {**(phases or {}), "training": round(t_trained - t0, 1),
                                   "evaluation_raw": round(t_lfeat - t_trained, 1),
                                   "features_learned": round(t_leval - t_lfeat, 1),
                                   "evaluation_learned": round(time.time() - t_leval, 1)}}
    results["timing"] = {"training": {"fit_s": round(t_fit - t0, 2), "export_s": round(t_trained - t_fit, 2),
                                      **{f"worker_{k}": v for k, v in (state.get("timing") or {}).items()}}}
    results["history"] = state["history"]
    table = comparison_table(results, {LEARNED_ROW: learned}, columns, splavu=False)
    folder.results_json.write_text(json.dumps(results, indent=2))
    folder.results_table.write_text(table + "\n")
    (folder.root / TABLE).write_text(table + "\n")
    if cfg.eval.plots:
        comparison_plot(results, {LEARNED_ROW: learned}, columns, folder.root / PLOT, splavu=False)
    return results
