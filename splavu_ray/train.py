"""Train the anonymizing adapter: ``python -m splavu_ray.train [--config FILE] [key=value ...]``.

With no arguments: joins the Ray cluster named by RAY_ADDRESS (as under ``ray job submit``) or starts a
local one, generates the built-in synthetic privacy dataset, extracts features with the pretrained
tiny V-JEPA 2, trains f_A with the SPLAVU objective on Ray Train + DeepSpeed, evaluates raw vs
anonymized features and writes ``output_dir/results.json``. Running the same command again with the
same run_name resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .config import Config, ConfigError, load_config


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Config]:
    parser = argparse.ArgumentParser(prog="python -m splavu_ray.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: the built-in demo, splavu_ray/configs/demo.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.epochs=5")
    args = parser.parse_args(argv)
    from .config import CONFIG_DIR

    cfg = load_config(args.config or CONFIG_DIR / "demo.yaml", args.overrides)
    return args, cfg


def check_inputs(cfg: Config) -> None:
    """Fail before any work on inputs we can check cheaply."""
    d = cfg.data
    for key, value in (("data.dataset", d.dataset if d.dataset != "synthetic" else None),
                       ("data.privacy_manifest", d.privacy_manifest)):
        if value and "://" not in value and not os.path.isfile(os.path.expanduser(value)):
            raise ConfigError(f"config key '{key}': manifest {value!r} does not exist")
    if cfg.train.mode == "online" and (cfg.loss.w_tad > 0 or cfg.loss.w_ad > 0):
        # Online mode streams trimmed clips only; co-training reads untrimmed sequences from the store.
        raise ConfigError("config key 'train.mode': 'online' trains on trimmed clips only; loss.w_tad / "
                          "loss.w_ad co-training needs train.mode=cached")
    from .backbone import BackboneError, resolve_source

    try:
        resolve_source(cfg.backbone.source)
    except BackboneError as exc:
        raise ConfigError(f"config key 'backbone.source': {exc}") from None


def init_ray(cfg: Config) -> None:
    import ray

    from .trainer import worker_env

    if ray.is_initialized():
        return
    env = worker_env(cfg)
    for k, v in env.items():
        os.environ.setdefault(k, v)
    # address None: ray.init joins RAY_ADDRESS (ray job submit) or the cluster `ray start` left on this
    # machine, else starts a local Ray. A local Ray keeps its dashboard (Ray Train V2's placement-group
    # cleaner queries the state API through it); Ray binds it to loopback by default.
    # Under `ray job submit` Ray merges our runtime_env into the job's and refuses a key set in both:
    # the job's own env_vars win.
    job_env = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}") or "{}")
    taken = set(((job_env.get("runtime_env") or {}).get("env_vars") or {}))
    env = {k: v for k, v in env.items() if k not in taken}
    ray.init(address=cfg.ray.address, runtime_env={"env_vars": env} if env else None, log_to_driver=True)


# Sections whose change makes a checkpoint of the same run meaningless to resume from.
RESUME_KEYS = ("seed", "data", "backbone", "adapter", "loss", "optim", "deepspeed", "train.mode", "train.select",
               "scaling.num_workers")


def _pick(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d.get(part, {}) if isinstance(d, dict) else {}
    return d


def check_resume(cfg: Config) -> None:
    """Same run_name + output_dir resumes; refuse (before any work) when the earlier run's resolved
    config differs in what its checkpoints depend on, instead of silently continuing the old run."""
    saved = cfg.output_path / "config.yaml"
    storage = cfg.ray.storage_path or str(cfg.output_path / "ray")
    if not saved.is_file() or "://" in storage or not (Path(storage) / cfg.run_name).is_dir():
        return
    try:
        old = load_config(saved).to_dict()
    except ConfigError:
        return  # written by another version: nothing reliable to compare
    new = cfg.to_dict()
    changed = [k for k in RESUME_KEYS if _pick(old, k) != _pick(new, k)]
    if changed:
        raise ConfigError(f"run '{cfg.run_name}' in {cfg.output_path} already has checkpoints made with a different "
                          f"config ({', '.join(changed)} changed; see {saved}); running again resumes it, so pick a new "
                          "run_name/output_dir, or delete that folder to start over")


def run(cfg: Config) -> dict:
    from .adapter import load_adapter
    from .datasets import resolve_manifests
    from .evaluate import EvalInputError, ensure_stores, evaluate_run, plan_evaluation, report_table, write_outputs
    from .features import ensure_features
    from .trainer import deepspeed_config, export_from_result, fit

    t_start = time.time()
    out = cfg.output_path
    out.mkdir(parents=True, exist_ok=True)
    check_resume(cfg)
    cfg.save()
    (out / "deepspeed.json").write_text(json.dumps(deepspeed_config(cfg, cfg.scaling.num_workers), indent=2))
    init_ray(cfg)

    manifests = resolve_manifests(cfg)
    try:  # evaluation labels are checked before any work, not after training
        plan = plan_evaluation(cfg, manifests)
    except EvalInputError as exc:
        raise ConfigError(str(exc)) from None
    # The feature store serves cached training and, in both modes, the final evaluation.
    store = ensure_features(cfg, manifests["main"])
    pstore = store if manifests["privacy"] == manifests["main"] else ensure_features(cfg, manifests["privacy"])
    d = cfg.data
    t_features = time.time()
    print(f"[splavu] features ready in {t_features - t_start:.0f}s: {store.root}", flush=True)

    result = fit(cfg, store.root, [d.train_split], [d.val_split], manifest_path=manifests["main"])
    if result.error:
        raise RuntimeError(f"training failed: {result.error}")
    exported = export_from_result(result, out)
    best = exported.get("best_adapter") or exported["adapter"]
    adapter = load_adapter(best)
    print(f"[splavu] adapter exported to {best} (best epoch {exported['state']['best_epoch']}, "
          f"val top-1 {exported['state']['best_val_top1']:.2f})", flush=True)

    t_trained = time.time()
    stores = ensure_stores(cfg, list(plan.manifests.values())) if plan.manifests else {}
    results = evaluate_run(cfg, adapter, plan, {manifests["main"]: store, manifests["privacy"]: pstore, **stores})
    results["run"] = {"run_name": cfg.run_name, "adapter": str(best), "best_epoch": exported["state"]["best_epoch"],
                      "best_val_top1": exported["state"]["best_val_top1"], "feature_store": store.root,
                      "backbone": store.meta.get("backbone"), "adapter_parameters": adapter.num_parameters(),
                      "wall_time_s": round(time.time() - t_start, 1),
                      # where the wall time went: data + features, Ray Train (start-up included), evaluation
                      "phases_s": {"features": round(t_features - t_start, 1), "training": round(t_trained - t_features, 1),
                                   "evaluation": round(time.time() - t_trained, 1)}}
    paths = write_outputs(results, out, cfg.eval.plots)
    print("\n" + report_table(results) + f"\n\nresults: {paths['json']}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    try:
        _, cfg = parse_args(argv)
        check_inputs(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        run(cfg)
    except ConfigError as exc:  # e.g. evaluation labels missing, found before training starts
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
