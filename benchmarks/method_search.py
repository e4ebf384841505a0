"""Fast search over SPLAVU loss weights / lr on a cached feature store (one process, no Ray, no DeepSpeed).

    python benchmarks/method_search.py STORE [--last] [key=value ...]

STORE is the feature store the demo extracted (``[splavu] features ready in ...: STORE`` in its log).
The script replays the recipe of ``splavu_ray.trainer.train_loop`` with plain PyTorch: heads first on
raw features, then the joint objective, the same batches (``rank_batches`` with one rank), the same lr
schedule and clipping; it keeps the adapter with the best validation action top-1 (the paper's rule), or
the last one with ``--last``, and evaluates it with ``evaluate_features`` exactly as the train command
does. One configuration takes ~30-100 s on 2 cores instead of a full Ray Train run; confirm a choice
with ``python -m splavu_ray.train`` itself. Results: docs/benchmarks.md ("Method proof").
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


def search_run(store: FeatureStore, cfg, last: bool = False) -> dict:
    torch.manual_seed(cfg.seed)
    d, o = cfg.data, cfg.optim
    tr, va = store.load(d.train_split), store.load(d.val_split)
    clips, static = torch.from_numpy(tr.stacked_clips()), torch.from_numpy(tr.stacked_static())
    action = torch.from_numpy(tr.action_ids)
    vc, vs, vy = (torch.from_numpy(va.stacked_clips()), torch.from_numpy(va.stacked_static()),
                  torch.from_numpy(va.action_ids))
    model = SplavuModel(adapter_from_config(tr.dim, cfg.adapter), len(store.meta["actions"]))
    steps, total = len(tr) // o.batch_size, o.head_epochs + o.epochs
    opt = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=scaled_lr(o.lr, o.batch_size, o.base_batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(
        s, total * steps, int(o.warmup_epochs * steps), o.schedule, o.min_lr_ratio))
    weights = LossWeights.from_config(cfg.loss)
    best, best_state, t0 = -1.0, None, time.time()
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
        if epoch >= o.head_epochs and m["val_top1"] > best:
            best, best_state = m["val_top1"], {k: v.clone() for k, v in model.adapter.state_dict().items()}
    if not last and best_state is not None:
        model.adapter.load_state_dict(best_state)
    res = evaluate_features(cfg, model.adapter, store.load(d.privacy_train_split), store.load(d.privacy_test_split),
                            tr, store.load(d.test_split))
    p, a = res["privacy"], res["action"]
    return {"cmap_raw": p["cmap_raw"], "cmap_anonymized": p["cmap_anonymized"], "cmap_chance": p["cmap_chance"],
            "leakage_above_chance_drop": p["leakage_above_chance_drop"], "top1_raw": a["top1_raw"],
            "top1_anonymized": a["top1_anonymized"], "selection": "last" if last else "best_val_top1",
            "seconds": round(time.time() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store")
    parser.add_argument("--config", default=str(CONFIG_DIR / "demo.yaml"))
    parser.add_argument("--last", action="store_true", help="keep the last adapter, not the best by val top-1")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, args.overrides)
    out = search_run(FeatureStore.open(args.store), cfg, args.last)
    print(json.dumps({"overrides": args.overrides, **{k: round(v, 2) if isinstance(v, float) else v
                                                       for k, v in out.items()}}))


if __name__ == "__main__":
    main()
