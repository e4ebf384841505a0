"""Fast search over SPLAVU loss weights / lr on a cached feature store (one process, no Ray, no DeepSpeed).

    python benchmarks/method_search.py STORE [--select RULE ...] [--seeds 0 1 2] [--eval-seeds 0 1 2] [key=value ...]

STORE is the feature store the demo extracted (``[splavu] features ready in ...: STORE`` in its log).
The script replays the recipe of ``splavu_ray.trainer.train_loop`` with plain PyTorch: heads first on
raw features, then the joint objective, the same batches (``rank_batches`` with one rank), the same lr
schedule and clipping. It keeps the adapter of every joint epoch (in memory), picks one per selection rule
and evaluates it with ``evaluate_features`` exactly as the train command does. Selection rules (only the
labels SPLAVU trains with are used: validation action labels and the label-free static-twin proxy):

- ``best``: the best validation action top-1, first such epoch (the paper's rule, the trainer's today);
- ``last``: the last epoch;
- ``private:TOL``: among the epochs whose validation top-1 is within TOL points of the best, the one whose
  validation static clips retrieve their twin least often (``val_twin_retrieval``); ties go to the higher
  validation NT-Xent, then to the later epoch.

One configuration takes ~30-100 s on 2 cores instead of a full Ray Train run; confirm a choice with
``python -m splavu_ray.train`` itself. Results: docs/benchmarks.md ("Method proof").
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from splavu_ray.adapter import adapter_from_config
from splavu_ray.config import CONFIG_DIR, load_config
from splavu_ray.engine import (Batch, SplavuModel, head_step_loss, lr_lambda, param_groups, rank_batches,
                               scaled_lr, splavu_step_loss, validation_metrics)
from splavu_ray.evaluate import evaluate_features
from splavu_ray.feature_store import FeatureStore
from splavu_ray.losses import LossWeights


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


def train_history(store: FeatureStore, cfg) -> tuple[SplavuModel, list[dict], list[dict]]:
    """Train as the worker loop does; the validation record and adapter state of every joint epoch."""
    torch.manual_seed(cfg.seed)
    d, o = cfg.data, cfg.optim
    tr, va = store.load(d.train_split), store.load(d.val_split)
    clips, static = torch.from_numpy(tr.stacked_clips()), torch.from_numpy(tr.stacked_static())
    action = torch.from_numpy(tr.action_ids)
    vc, vs, vy = (torch.from_numpy(va.stacked_clips()), torch.from_numpy(va.stacked_static()),
                  torch.from_numpy(va.action_ids))
    model = SplavuModel(adapter_from_config(tr.dim, cfg.adapter), len(store.meta["actions"]))
    steps, total = len(tr) // o.batch_size, o.head_epochs + o.epochs
    lr = scaled_lr(o.lr, o.batch_size, o.base_batch_size)
    opt = torch.optim.AdamW(param_groups(model, o.weight_decay, lr, o.head_lr_scale), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(
        s, total * steps, int(o.warmup_epochs * steps), o.schedule, o.min_lr_ratio))
    weights = LossWeights.from_config(cfg.loss)
    history, states = [], []
    for epoch in range(total):
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 101)
        model.train()
        for idx in rank_batches(len(tr), o.batch_size, 0, 1, cfg.seed, epoch):
            batch = Batch(clips[idx], static[idx], action[idx])
            out = (head_step_loss(model, batch) if epoch < o.head_epochs else
                   splavu_step_loss(model, batch, weights, cfg.loss.temperature, cfg.loss.w_ar, gen))
            opt.zero_grad()
            out["loss"].backward()
            if o.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
            opt.step()
            sched.step()
        m = validation_metrics(model, vc, vs, vy, cfg.loss.temperature)
        if epoch >= o.head_epochs:
            history.append({"epoch": epoch + 1, **m})
            states.append({k: v.clone() for k, v in model.adapter.state_dict().items()})
    return model, history, states


METRICS = ("cmap_raw", "cmap_anonymized", "cmap_chance", "leakage_above_chance_drop", "top1_raw", "top1_anonymized")


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
    model, history, states = train_history(store, cfg)
    d, train_s = cfg.data, round(time.time() - t0, 1)
    splits = (store.load(d.privacy_train_split), store.load(d.privacy_test_split), store.load(d.train_split),
              store.load(d.test_split))
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
