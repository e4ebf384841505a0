"""Evaluate an adapter, raw vs anonymized features: ``python -m splavu_ray.evaluate adapter=PATH [baselines=[blur,...]] [--config FILE] [key=value ...]``.

(also run by ``python -m splavu_ray.train`` on the adapter it keeps). Which tasks run and how is
splavu_ray.evaluation.suite: privacy (worst-case attacker cMAP), action (linear probe top-1), and,
when the data has their labels, bias, re-identification, TAD and anomaly detection. Writes
``output_dir/results.json``, ``results.md`` (the Table 1 layout) and PNGs. Inputs (adapter, feature
width, manifest labels) are checked before any work; features missing from the cache are extracted.
``baselines=[downsample2,downsample4,blur,pixelate]`` (``eval.baselines``) also scores pixel-level baselines on
the same tasks and writes ``baselines.md`` / ``baselines.png`` (splavu_ray.evaluation.baselines);
``pixel_anonymizer=PATH`` (``eval.pixel_anonymizer``) adds the row of a learned pixel anonymizer f_P (a
``train.anonymizer=pixel_unet`` run's ``best_pixel_anonymizer``; docs/method.md, section 9).
The tasks run in a Ray task with one training worker's resources (``scaling``; on a cluster, where the GPUs
are), not in this process: splavu_ray.distributed.evaluation_task; results.json ``timing.evaluation_task``.
"""

from __future__ import annotations

import argparse
import sys
import time

from .config import CONFIG_DIR, Config, ConfigError, load_config
from .data.person_masks import PersonMaskError, require_manifest_masks
from .data.pixel_ops import NEEDS_MASK
from .data.remote_cache import RemoteFolderError, is_remote_folder, local_copy
from .data.sources import resolve_manifests
from .distributed.evaluation_task import evaluate_in_task
from .distributed.feature_job import ensure_stores
from .evaluation.baselines import LEARNED_ROW, comparison_plot, comparison_table, pixel_config
from .evaluation.baselines import PLOT as BASELINES_PLOT
from .evaluation.baselines import TABLE as BASELINES_TABLE
from .evaluation.suite import (
    EvalPlan,
    backbone_width,
    plan_evaluation,
    report_table,
    table_columns,
    write_outputs,
)
from .evaluation.task import EvalInputError, check_width
from .models.adapter import AdapterLoadError, AnonymizingAdapter, load_adapter
from .models.pixel_anonymizer import PixelAnonymizerLoadError, load_pixel_anonymizer
from .run_folder import RunFolder


def parse_args(argv: list[str] | None) -> tuple[str, Config]:
    parser = argparse.ArgumentParser(prog="python -m splavu_ray.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: the built-in demo, splavu_ray/configs/demo.yaml)")
    parser.add_argument("overrides", nargs="*", help="adapter=PATH (required) and dotted key=value overrides")
    args = parser.parse_args(argv)
    # 'adapter=PATH' names the export; 'adapter.*' keys stay config overrides of the adapter section.
    paths = [o.split("=", 1)[1] for o in args.overrides if o.startswith("adapter=")]
    # 'baselines=[blur,...]' is eval.baselines: pixel baselines scored next to the adapter
    # 'pixel_anonymizer=PATH' is eval.pixel_anonymizer: a learned pixel anonymizer (f_P) scored as one more row
    overrides = ["eval." + o if o.startswith(("baselines=", "pixel_anonymizer=")) else o
                 for o in args.overrides if not o.startswith("adapter=")]
    if len(paths) != 1 or not paths[0]:
        raise ConfigError("give the adapter to evaluate exactly once: adapter=PATH (a folder with adapter.json and "
                          "adapter.safetensors, e.g. outputs/splavu-demo/best_adapter)")
    return paths[0], load_config(args.config or CONFIG_DIR / "demo.yaml", overrides)


def main(argv: list[str] | None = None) -> int:
    t0 = time.time()
    try:
        adapter_path, cfg = parse_args(argv)
        # an adapter in object storage (adapter=s3://.../best_adapter) is copied once into the local cache
        adapter = load_adapter(local_copy(adapter_path) if is_remote_folder(adapter_path) else adapter_path)
        check_width(adapter, backbone_width(cfg), f"backbone {cfg.backbone.source!r}")
        for fp_path in (cfg.eval.pixel_anonymizer, cfg.data.pixel.anonymizer):  # f_P exports load, before any work
            if fp_path:
                load_pixel_anonymizer(fp_path)
        manifests = resolve_manifests(cfg)
        plan = plan_evaluation(cfg, manifests)
        if masked := [b for b in cfg.eval.baselines if b in NEEDS_MASK]:  # before any work: the masks exist
            require_manifest_masks(plan.manifests.values(), cfg.data.skip_feature_splits)
    except PersonMaskError as exc:
        print(f"error: pixel baseline {masked[0]}: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, AdapterLoadError, EvalInputError, RemoteFolderError, PixelAnonymizerLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for task, reason in plan.skipped.items():
        print(f"[evaluate] skipping {task}: {reason}", file=sys.stderr)
    stores = ensure_stores(cfg, list(plan.manifests.values()))
    try:
        results = evaluate_in_task(cfg, adapter, plan, stores, RunFolder.of(cfg))
    except EvalInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    main_store = stores.get(manifests["main"])
    results["run"] = {"run_name": cfg.run_name, "adapter": str(adapter_path),
                      "feature_store": main_store.root if main_store else None,
                      "backbone": main_store.meta.get("backbone") if main_store else None,
                      "adapter_parameters": adapter.num_parameters(), "wall_time_s": round(time.time() - t0, 1)}
    try:
        baselines = run_baselines(cfg, plan, adapter.dim)
    except EvalInputError as exc:
        print(f"error: pixel baseline: {exc}", file=sys.stderr)
        return 2
    if baselines:
        results["baselines"] = {name: {c.header: v[0] for c in table_columns() if (v := c.values(res)) is not None}
                                for name, res in baselines.items()}
    folder = RunFolder.of(cfg)
    paths = write_outputs(results, folder, cfg.eval.plots)
    table = report_table(results)
    if baselines:
        comparison = comparison_table(results, baselines, table_columns())
        paths["baselines"] = folder.root / BASELINES_TABLE
        paths["baselines"].write_text(comparison + "\n")
        if cfg.eval.plots and (plot := comparison_plot(results, baselines, table_columns(), folder.root / BASELINES_PLOT)):
            paths["baselines_plot"] = plot
        table += "\n\npixel baselines (each row: its features, every task as above):\n\n" + comparison
    print("\n" + table + "\n\n" + "\n".join(f"{k}: {p}" for k, p in paths.items()), flush=True)
    if uri := folder.publish():  # output_dir=s3://...: the staged folder goes up
        print(f"[evaluate] output folder uploaded to {uri}", flush=True)
    return 0


def run_baselines(cfg: Config, plan: EvalPlan, dim: int) -> dict[str, dict]:
    """Every pixel baseline of ``eval.baselines``: its feature store (``data.pixel.transform``, extracted when
    missing), then the planned tasks with f_A the identity; each one's files under output_dir/baselines/NAME."""
    identity = AnonymizingAdapter(dim, "mlp", layers=1)  # zero-initialised residual blocks: exactly the identity
    out = {}
    for name in cfg.eval.baselines:
        data = cfg.to_dict()
        data["data"]["pixel"]["transform"] = name
        data["eval"]["baselines"] = []
        data["output_dir"] = str(RunFolder.of(cfg).root / "baselines" / name)
        bcfg = Config.model_validate(data)
        print(f"[evaluate] pixel baseline {name}", file=sys.stderr, flush=True)
        stores = ensure_stores(bcfg, list(plan.manifests.values()))
        res = evaluate_in_task(bcfg, identity, plan, stores, RunFolder.of(bcfg))
        res["run"] = {"baseline": name, "pixel": bcfg.data.pixel.model_dump()}
        write_outputs(res, RunFolder.of(bcfg), plots=False)
        out[name] = res
    if cfg.eval.pixel_anonymizer:  # f_P: the frames through the learned anonymizer (data.pixel.transform=learned)
        lcfg = pixel_config(cfg, "learned", str(RunFolder.of(cfg).root / "baselines" / "learned"),
                            anonymizer=cfg.eval.pixel_anonymizer, tasks=plan.tasks)
        print(f"[evaluate] pixel baseline learned ({cfg.eval.pixel_anonymizer})", file=sys.stderr, flush=True)
        res = evaluate_in_task(lcfg, identity, plan, ensure_stores(lcfg, list(plan.manifests.values())),
                               RunFolder.of(lcfg))
        res["run"] = {"baseline": "learned", "pixel": lcfg.data.pixel.model_dump()}
        write_outputs(res, RunFolder.of(lcfg), plots=False)
        out[LEARNED_ROW] = res
    return out


if __name__ == "__main__":
    raise SystemExit(main())
