"""Fast search over SPLAVU loss weights / lr on a cached feature store (one process, no Ray, no DeepSpeed).

    python benchmarks/method_search.py STORE [--select RULE ...] [--seeds 0 1 2] [--eval-seeds 0 1 2] [key=value ...]

STORE is the feature store the demo extracted (``[splavu] features ready in ...: STORE`` in its log).
The script trains with ``splavu_ray.training.replay.train_in_process``: the epoch loop of the Ray Train
worker in one process (heads first on raw features, then the joint objective, the same batches, steps,
lr schedule and clipping, without Ray or DeepSpeed). It keeps the adapter of every joint epoch (in memory),
picks one per selection rule and evaluates it with ``evaluate_features``, the train command's task code. Selection rules (only the
labels SPLAVU trains with are used: validation action labels and the label-free static-twin proxy):

- ``best``: the best validation action top-1, first such epoch (the paper's rule, the trainer's today);
- ``last``: the last epoch;
- ``private:TOL``: among the epochs whose validation top-1 is within TOL points of the best, the one whose
  validation static clips retrieve their twin least often (``val_twin_retrieval``); ties go to the higher
  validation NT-Xent, then to the later epoch.

Every score comes from the selection split (train and val only; splavu_ray.evaluation.selection): the
attacker trains on part of privacy_train and is scored on the held-out rest, the action probe is scored on
val. A search chooses, so it never reads test; the reported run (``python -m splavu_ray.train``) scores test
once. One configuration takes ~30-100 s on 2 cores instead of a full Ray Train run. Results:
docs/benchmarks.md ("Method proof").
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from splavu_ray.config import CONFIG_DIR, load_config
from splavu_ray.data.feature_store import FeatureStore
from splavu_ray.evaluation.selection import SelectionStore, selection_config
from splavu_ray.evaluation.suite import evaluate_features
from splavu_ray.training.replay import train_in_process


def parse_rule(rule: str) -> tuple[str, float]:
    """'best' | 'last' | 'private:TOL' -> (kind, tol)."""
    kind, _, tol = rule.partition(":")
    if kind in ("best", "last") and not tol:
        return kind, 0.0
    if kind == "private" and tol:
        return kind, float(tol)
    raise argparse.ArgumentTypeError(f"selection rule must be best, last or private:TOL, not {rule!r}")


def select_epoch(history: list[dict], rule: str) -> int:
    """Index into ``history`` (one validation record per joint epoch) of the adapter the rule keeps."""
    kind, tol = parse_rule(rule)
    if kind == "last":
        return len(history) - 1
    top = max(h["val_top1"] for h in history)
    if kind == "best":
        return next(i for i, h in enumerate(history) if h["val_top1"] == top)
    near = [i for i, h in enumerate(history) if h["val_top1"] >= top - tol - 1e-9]
    return min(near, key=lambda i: (history[i]["val_twin_retrieval"], -history[i]["val_nt_xent"], -i))


METRICS = ("cmap_raw", "cmap_anonymized", "cmap_chance", "leakage_above_chance_drop", "top1_raw", "top1_anonymized")


def selection_splits(store: FeatureStore, cfg) -> tuple:
    """The attacker's and the probe's (train, score) splits, all from train and val (the selection split of
    ``eval.score_on=val``): the attacker trains on part of privacy_train and is scored on the rest, the probe
    trains on train and is scored on val. A search chooses; it never reads test."""
    d = selection_config(cfg).data
    view = SelectionStore(store, cfg.eval.selection_holdout)
    return tuple(view.load(s) for s in (d.privacy_train_split, d.privacy_test_split, d.train_split, d.test_split))


def evaluate_seeds(cfg, adapter, splits, seeds: list[int]) -> dict:
    """``evaluate_features`` once per evaluation seed (attacker and probe init and batches); the mean of each
    metric, plus the per-seed values when there is more than one seed. Single attacker and probe runs on these
    small splits move by several points from seed to seed."""
    runs = []
    for seed in seeds:
        res = evaluate_features(cfg.model_copy(update={"seed": seed}), adapter, *splits)
        runs.append({k: (res["privacy"] if k.startswith("cmap") or k.startswith("leakage") else res["action"])[k]
                     for k in METRICS})
    out = {k: sum(r[k] for r in runs) / len(runs) for k in METRICS}
    if len(runs) > 1:
        out["per_eval_seed"] = {s: r for s, r in zip(seeds, runs)}
    return out


def search_run(store: FeatureStore, cfg, rules: list[str], eval_seeds: list[int] | None = None) -> dict:
    """Train once, evaluate the adapter each selection rule keeps (each distinct epoch evaluated once), with
    the training seed or each of ``eval_seeds``."""
    t0 = time.time()
    replay = train_in_process(cfg, store)
    model, history, states = replay.model, replay.joint_history, replay.joint_adapters
    train_s = round(time.time() - t0, 1)
    splits = selection_splits(store, cfg)
    evaluated: dict[int, dict] = {}
    out = {"seed": cfg.seed, "train_seconds": train_s, "selections": {}}
    for rule in rules:
        i = select_epoch(history, rule)
        if i not in evaluated:
            model.adapter.load_state_dict(states[i])
            evaluated[i] = evaluate_seeds(cfg, model.adapter, splits, eval_seeds or [cfg.seed])
        h = history[i]
        out["selections"][rule] = {"epoch": h["epoch"], "val_top1": h["val_top1"],
                                   "val_twin_retrieval": h["val_twin_retrieval"], **evaluated[i]}
    out["seconds"] = round(time.time() - t0, 1)
    out["history"] = history
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store")
    parser.add_argument("--config", default=str(CONFIG_DIR / "demo.yaml"))
    parser.add_argument("--select", nargs="+", default=["best"], metavar="RULE", type=_rule,
                        help="checkpoint-selection rules: best, last, private:TOL (default: best)")
    parser.add_argument("--last", action="store_true", help="shorthand for --select last")
    parser.add_argument("--seeds", nargs="+", type=int, help="run each seed (overrides seed=)")
    parser.add_argument("--eval-seeds", nargs="+", type=int,
                        help="evaluate with each of these seeds and report the mean (default: the training seed)")
    parser.add_argument("--history", action="store_true", help="also print the per-epoch validation record")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    rules = ["last"] if args.last else args.select
    torch.set_num_threads(1)
    store = FeatureStore.open(args.store)
    for seed in args.seeds if args.seeds is not None else [None]:
        overrides = args.overrides + ([f"seed={seed}"] if seed is not None else [])
        out = search_run(store, load_config(args.config, overrides), rules, args.eval_seeds)
        if not args.history:
            out.pop("history")
        print(json.dumps(_rounded({"overrides": overrides, **out})), flush=True)


def _rule(rule: str) -> str:
    parse_rule(rule)
    return rule


def _rounded(x):
    if isinstance(x, float):
        return round(x, 2)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


if __name__ == "__main__":
    main()
