"""Where one epoch of a sweep trial's worker goes, part by part, without Ray.

    python benchmarks/epoch_parts.py [--store STORE] [--epochs 3] [--threads 1] [key=value ...]

The config a ``sweeps/loss_weights.yaml`` trial trains with (the searched weights at mid-range values, as in
``benchmarks/trial_math.py``), the plain-torch stepper the one-worker path uses, torch at ``--threads``
(a one-CPU Ray Train worker gets 1: Ray sets OMP_NUM_THREADS to the CPUs a worker holds). Per joint epoch,
process CPU seconds of: building the epoch's batches (index + co-training draws), the training steps
(forward, backward, clipping, AdamW), validation (``validation_metrics``), and the per-epoch adapter copy
the worker keeps for the selection rule. Process time, so that other jobs on a shared machine matter less.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

PARAMS = {"loss.w_b": 1.0, "loss.w_lc": 30.0, "loss.w_t": 1.0, "loss.w_ar": 1.0, "loss.w_tad": 1.0, "loss.w_ad": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="feature store of the base config's data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    torch.set_num_threads(args.threads)
    from splavu_ray.run_folder import RunFolder
    from splavu_ray.search.spec import load_sweep, trial_config
    from splavu_ray.training.batches import CachedSource
    from splavu_ray.training.loop import TorchStepper, step_generator, steps_per_epoch, train_epoch
    from splavu_ray.training.model import build_model
    from splavu_ray.training.schedule import build_optimizer
    from splavu_ray.training.steps import Objective, validation_metrics

    _, base = load_sweep("sweeps/loss_weights.yaml", args.overrides)
    cfg = trial_config(base, PARAMS, RunFolder("/tmp/epoch_parts"), "epoch-parts")
    if args.store:
        store = args.store
    else:
        from splavu_ray.data.feature_store import default_store_root
        from splavu_ray.data.sources import resolve_manifests

        store = default_store_root(cfg, resolve_manifests(cfg)["main"])
    source = CachedSource(store, [cfg.data.train_split], [cfg.data.val_split], cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, source)
    optimizer, scheduler = build_optimizer(model, cfg.optim, steps_per_epoch(source.num_train, cfg))
    stepper, obj = TorchStepper(model, optimizer, scheduler, cfg.optim.grad_clip), Objective.from_config(cfg)
    for epoch in range(cfg.optim.head_epochs, cfg.optim.head_epochs + args.epochs):
        parts, t = {}, time.process_time()
        batches = list(source.batches(epoch))
        parts["batches"], t = time.process_time() - t, time.process_time()
        train_epoch(model, stepper, batches, "joint", obj, step_generator(cfg.seed, epoch, 0), "cpu", torch.float32)
        parts["train_steps"], t = time.process_time() - t, time.process_time()
        clips, static, action = source.validation()
        validation_metrics(model, clips, static, action, obj.temperature)
        parts["validation"], t = time.process_time() - t, time.process_time()
        {k: v.detach().cpu().float().clone() for k, v in model.adapter.state_dict().items()}
        parts["adapter_copy"] = time.process_time() - t
        print(json.dumps({"epoch": epoch + 1, "steps": len(batches), "threads": args.threads,
                          **{f"{k}_cpu_s": round(v, 4) for k, v in parts.items()}}), flush=True)
    print(json.dumps({"loadavg": [round(x, 1) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
