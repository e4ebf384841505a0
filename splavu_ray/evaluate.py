"""Evaluate an adapter, raw vs anonymized features: ``python -m splavu_ray.evaluate adapter=PATH [--config FILE] [key=value ...]``.

(also run by ``python -m splavu_ray.train`` on the adapter it keeps). Which tasks run and how is
splavu_ray.evaluation.suite: privacy (worst-case attacker cMAP), action (linear probe top-1), and,
when the data has their labels, bias, re-identification, TAD and anomaly detection. Writes
``output_dir/results.json``, ``results.md`` (the Table 1 layout) and PNGs. Inputs (adapter, feature
width, manifest labels) are checked before any work; features missing from the cache are extracted.
"""

from __future__ import annotations

import argparse
import sys
import time

from .config import CONFIG_DIR, Config, ConfigError, load_config
from .data.sources import resolve_manifests
from .distributed.feature_job import ensure_stores
from .evaluation.suite import backbone_width, evaluate_run, plan_evaluation, report_table, write_outputs
from .evaluation.task import EvalInputError, check_width
from .models.adapter import AdapterLoadError, load_adapter
from .run_folder import RunFolder


def parse_args(argv: list[str] | None) -> tuple[str, Config]:
    parser = argparse.ArgumentParser(prog="python -m splavu_ray.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: the built-in demo, splavu_ray/configs/demo.yaml)")
    parser.add_argument("overrides", nargs="*", help="adapter=PATH (required) and dotted key=value overrides")
    args = parser.parse_args(argv)
    # 'adapter=PATH' names the export; 'adapter.*' keys stay config overrides of the adapter section.
    paths = [o.split("=", 1)[1] for o in args.overrides if o.startswith("adapter=")]
    overrides = [o for o in args.overrides if not o.startswith("adapter=")]
    if len(paths) != 1 or not paths[0]:
        raise ConfigError("give the adapter to evaluate exactly once: adapter=PATH (a folder with adapter.json and "
                          "adapter.safetensors, e.g. outputs/splavu-demo/best_adapter)")
    return paths[0], load_config(args.config or CONFIG_DIR / "demo.yaml", overrides)


def main(argv: list[str] | None = None) -> int:
    t0 = time.time()
    try:
        adapter_path, cfg = parse_args(argv)
        adapter = load_adapter(adapter_path)
        check_width(adapter, backbone_width(cfg), f"backbone {cfg.backbone.source!r}")
        manifests = resolve_manifests(cfg)
        plan = plan_evaluation(cfg, manifests)
    except (ConfigError, AdapterLoadError, EvalInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for task, reason in plan.skipped.items():
        print(f"[evaluate] skipping {task}: {reason}", file=sys.stderr)
    stores = ensure_stores(cfg, list(plan.manifests.values()))
    try:
        results = evaluate_run(cfg, adapter, plan, stores)
    except EvalInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    main_store = stores.get(manifests["main"])
    results["run"] = {"run_name": cfg.run_name, "adapter": str(adapter_path),
                      "feature_store": main_store.root if main_store else None,
                      "backbone": main_store.meta.get("backbone") if main_store else None,
                      "adapter_parameters": adapter.num_parameters(), "wall_time_s": round(time.time() - t0, 1)}
    paths = write_outputs(results, RunFolder.of(cfg), cfg.eval.plots)
    print("\n" + report_table(results) + "\n\n" + "\n".join(f"{k}: {p}" for k, p in paths.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
