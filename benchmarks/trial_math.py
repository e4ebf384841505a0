"""The training math of one sweep trial, without Ray: its FLOPs, and what the DeepSpeed engine adds per epoch.

    python benchmarks/trial_math.py [--store STORE] [--epochs 4] [key=value ...]

On the config a ``sweeps/loss_weights.yaml`` trial trains with (demo.yaml's data and epochs, one worker,
TAD + anomaly co-training; the searched weights fixed at mid-range values, overridable as sweep-file
``key=value`` arguments, e.g. ``base.loss.w_b=2``), in one process, torch at 1 thread (what a Ray Train
worker with one CPU gets):

1. FLOPs of one joint step (forward + backward, ``torch.utils.flop_counter``) with and without co-training,
   and per joint epoch;
2. process CPU seconds per joint epoch, stepping with plain torch AdamW + clipping (``TorchStepper``) and with
   a one-rank DeepSpeed engine (``DeepSpeedStepper``, the config's ZeRO stage; gloo), two rounds each, and
   the CPU seconds ``deepspeed.initialize`` takes; with each path's per-epoch losses;
3. how much this objective amplifies float rounding: the torch path again with every initial weight nudged
   by a relative 1e-7.

Process time, not wall time, so that other jobs on a shared machine matter less. ``--store``: a feature
store of the base config's data (default: the one the base config resolves to in ``data.cache_dir``).
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
    parser.add_argument("--epochs", type=int, default=4, help="joint epochs timed per path")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    torch.set_num_threads(1)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", "29517"), RANK="0",
                      WORLD_SIZE="1", LOCAL_RANK="0")
    from torch.utils.flop_counter import FlopCounterMode

    from splavu_ray.distributed.deepspeed_config import build_no_ops, deepspeed_config
    from splavu_ray.distributed.worker import DeepSpeedStepper
    from splavu_ray.run_folder import RunFolder
    from splavu_ray.search.spec import load_sweep, trial_config
    from splavu_ray.training.batches import CachedSource
    from splavu_ray.training.loop import TorchStepper, new_state, run_epoch, step_generator, steps_per_epoch
    from splavu_ray.training.model import build_model
    from splavu_ray.training.schedule import build_optimizer
    from splavu_ray.training.steps import Objective, splavu_step_loss

    _, base = load_sweep("sweeps/loss_weights.yaml", args.overrides)
    cfg = trial_config(base, PARAMS, RunFolder("/tmp/trial_math"), "trial-math")
    if args.store:
        store = args.store
    else:
        from splavu_ray.data.feature_store import default_store_root
        from splavu_ray.data.sources import resolve_manifests

        store = default_store_root(cfg, resolve_manifests(cfg)["main"])
    source = CachedSource(store, [cfg.data.train_split], [cfg.data.val_split], cfg)
    steps = steps_per_epoch(source.num_train, cfg)
    out: dict = {"store": str(store), "steps_per_epoch": steps, "torch_threads": torch.get_num_threads()}

    plain = cfg.model_copy(update={"loss": cfg.loss.model_copy(update={"w_tad": 0.0, "w_ad": 0.0})})
    for name, c in (("cotrain", cfg), ("no_cotrain", plain)):
        src = source if c is cfg else CachedSource(store, [c.data.train_split], [c.data.val_split], c)
        model = build_model(c, src)
        with FlopCounterMode(display=False) as fc:
            splavu_step_loss(model, next(iter(src.batches(0))), Objective.from_config(c),
                             step_generator(c.seed, 0, 0))["loss"].backward()
        out[f"gflop_per_joint_step_{name}"] = round(fc.get_total_flops() / 1e9, 2)
        out[f"gflop_per_joint_epoch_{name}"] = round(steps * fc.get_total_flops() / 1e9, 1)
    print(json.dumps(out), flush=True)

    obj, first = Objective.from_config(cfg), cfg.optim.head_epochs  # time joint epochs (the bulk of a trial)
    for kind in ("torch", "deepspeed", "torch", "deepspeed", "torch-nudged"):
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, source)
        if kind == "torch-nudged":
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1 + 1e-7 * torch.randn_like(p))
        optimizer, scheduler = build_optimizer(model, cfg.optim, steps)
        t0 = time.process_time()
        if kind == "deepspeed":
            import deepspeed

            build_no_ops()
            if not torch.distributed.is_initialized():
                deepspeed.init_distributed(dist_backend="gloo")
            engine, _, _, scheduler = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                                           config=deepspeed_config(cfg, 1))
            stepper, module = DeepSpeedStepper(engine, scheduler), engine
        else:
            stepper, module = TorchStepper(model, optimizer, scheduler, cfg.optim.grad_clip), model
        init = time.process_time() - t0
        state, cpu = new_state(), []
        for epoch in range(first, first + args.epochs):
            t0 = time.process_time()
            run_epoch(module, stepper, source, epoch, cfg, obj, state)
            cpu.append(round(time.process_time() - t0, 2))
        print(json.dumps({"stepper": kind, "init_cpu_s": round(init, 2), "joint_epoch_cpu_s": cpu,
                          "train_loss": [round(h["train_loss"], 5) for h in state["history"]]}), flush=True)
    print(json.dumps({"loadavg": [round(x, 1) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
