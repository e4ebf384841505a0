"""Ray Train + DeepSpeed: the worker loop that trains f_A and the heads, and the TorchTrainer around it.

Per worker: the frozen backbone (online mode only) stays OUTSIDE DeepSpeed; f_A + heads live in one
DeepSpeed engine (ZeRO stage 0-3). Every epoch each rank reports the same metrics; every
``checkpoint_every`` epochs all ranks save the DeepSpeed state into one Ray checkpoint, to which
rank 0 adds the consolidated adapter exports (latest and best by validation action accuracy).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .adapter import adapter_from_config, save_adapter
from .config import Config
from .engine import (Batch, SplavuModel, head_step_loss, lr_lambda, param_groups, rank_batches,
                     scaled_lr, splavu_step_loss, validation_metrics)
from .losses import LossWeights

STATE_TAG = "state"
TRAINER_STATE = "trainer_state.json"
LATEST_ADAPTER = "adapter"
BEST_ADAPTER = "best_adapter"


def use_bf16(cfg: Config) -> bool:
    return cfg.deepspeed.bf16 == "on" or (cfg.deepspeed.bf16 == "auto" and cfg.scaling.use_gpu)


def deepspeed_config(cfg: Config, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config, generated from the project config (the one source of truth)."""
    micro = cfg.optim.batch_size // world_size
    ds: dict[str, Any] = {
        "train_batch_size": micro * world_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": cfg.deepspeed.zero_stage},
        "bf16": {"enabled": use_bf16(cfg)},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.optim.grad_clip > 0:
        ds["gradient_clipping"] = cfg.optim.grad_clip
    if cfg.deepspeed.zero_stage == 3:
        # Tiny adapters: gather everything at once rather than in many small buckets.
        ds["zero_optimization"].update(stage3_param_persistence_threshold=0, stage3_max_live_parameters=10**9)
    return ds


def _adapter_state(engine, stage: int) -> dict[str, torch.Tensor]:
    """Full f_A weights on every rank (gathers ZeRO-3 partitions; collective, call on all ranks)."""
    module = engine.module.adapter
    if stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            return {k: v.detach().cpu().float().clone() for k, v in module.state_dict().items()}
    return {k: v.detach().cpu().float().clone() for k, v in module.state_dict().items()}


def _export(adapter_template, state: dict[str, torch.Tensor], folder: Path, meta: dict) -> None:
    adapter_template.load_state_dict(state)
    save_adapter(adapter_template, folder, meta)


def _all_mean(values: dict[str, float], device) -> dict[str, float]:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def train_loop(loop_config: dict[str, Any]) -> None:
    """The Ray Train worker loop (cached mode: features from the feature store)."""
    import deepspeed
    import ray.train
    import ray.train.torch

    from .feature_store import FeatureStore

    cfg = Config.model_validate(loop_config["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if cfg.scaling.use_gpu else torch.device("cpu")
    torch.manual_seed(cfg.seed)

    store = FeatureStore.open(loop_config["feature_store"])
    train = store.load(*loop_config["train_splits"])
    val = store.load(*loop_config["val_splits"])
    tr_clips, tr_static = torch.from_numpy(train.stacked_clips()), torch.from_numpy(train.stacked_static())
    tr_action = torch.from_numpy(train.action_ids)
    va_clips, va_static = torch.from_numpy(val.stacked_clips()).to(device), torch.from_numpy(val.stacked_static()).to(device)
    va_action = torch.from_numpy(val.action_ids).to(device)

    dim, num_actions = train.dim, len(store.meta["actions"])
    model = SplavuModel(adapter_from_config(dim, cfg.adapter), num_actions)
    template = adapter_from_config(dim, cfg.adapter)  # CPU copy for exports
    total_epochs = cfg.optim.head_epochs + cfg.optim.epochs
    steps_per_epoch = len(train) // cfg.optim.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"optim.batch_size={cfg.optim.batch_size} exceeds the {len(train)} training videos")
    lr = scaled_lr(cfg.optim.lr, cfg.optim.batch_size, cfg.optim.base_batch_size)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=lr)
    warmup = int(cfg.optim.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_lambda(
        s, total_epochs * steps_per_epoch, warmup, cfg.optim.schedule, cfg.optim.min_lr_ratio))
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, world))
    dtype = torch.bfloat16 if use_bf16(cfg) else torch.float32

    state: dict[str, Any] = {"epoch": 0, "best_val_top1": -1.0, "best_epoch": -1, "history": []}
    best_state: dict[str, torch.Tensor] | None = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as ckpt_dir:
            engine.load_checkpoint(ckpt_dir, tag=STATE_TAG)
            state = json.loads(Path(ckpt_dir, TRAINER_STATE).read_text())
            best_file = Path(ckpt_dir, BEST_ADAPTER, "adapter.safetensors")
            if best_file.is_file():
                from safetensors.torch import load_file

                best_state = load_file(str(best_file))
        if rank == 0:
            print(f"[splavu] resumed from epoch {state['epoch']} (best val top-1 {state['best_val_top1']:.2f})")

    weights = LossWeights.from_config(cfg.loss)
    meta = {"backbone": store.meta.get("backbone", {}), "run_name": cfg.run_name}
    for epoch in range(state["epoch"], total_epochs):
        phase = "heads" if epoch < cfg.optim.head_epochs else "joint"
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 101 + rank)
        sums: dict[str, float] = {}
        t0, clips_seen = time.perf_counter(), 0
        engine.train()
        for idx in rank_batches(len(train), cfg.optim.batch_size, rank, world, cfg.seed, epoch):
            batch = Batch(tr_clips[idx], tr_static[idx], tr_action[idx]).to(device, dtype)
            out = (head_step_loss(engine, batch) if phase == "heads" else
                   splavu_step_loss(engine, batch, weights, cfg.loss.temperature, cfg.loss.w_ar, gen))
            engine.backward(out["loss"])
            engine.step()
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            clips_seen += batch.clips.shape[0] * (batch.clips.shape[1] + (2 if phase == "joint" else 0))
        elapsed = time.perf_counter() - t0
        metrics = {f"train_{k}": v / steps_per_epoch for k, v in sums.items()}
        metrics["clips_per_s"] = clips_seen / max(elapsed, 1e-9)
        metrics = _all_mean(metrics, device)
        metrics["clips_per_s"] *= world  # all workers together
        metrics.update(validation_metrics(engine, va_clips.to(dtype), va_static.to(dtype), va_action, cfg.loss.temperature))
        metrics.update(epoch=epoch + 1, phase=phase, lr=float(scheduler.get_last_lr()[0]))

        adapter_state = _adapter_state(engine, cfg.deepspeed.zero_stage)
        # The best checkpoint is chosen by validation action accuracy, in the joint phase only
        # (during the heads phase f_A is still the identity).
        if phase == "joint" and metrics["val_top1"] > state["best_val_top1"]:
            state.update(best_val_top1=metrics["val_top1"], best_epoch=epoch + 1)
            best_state = adapter_state
        metrics["best_val_top1"] = state["best_val_top1"]
        state["epoch"] = epoch + 1
        state["history"].append(metrics)

        last = epoch + 1 == total_epochs
        if (epoch + 1) % cfg.train.checkpoint_every == 0 or last:
            with tempfile.TemporaryDirectory() as tmp:
                engine.save_checkpoint(tmp, tag=STATE_TAG)
                if rank == 0:
                    Path(tmp, TRAINER_STATE).write_text(json.dumps(state))
                    _export(template, adapter_state, Path(tmp, LATEST_ADAPTER), {**meta, "epoch": epoch + 1})
                    if best_state is not None:
                        _export(template, best_state, Path(tmp, BEST_ADAPTER),
                                {**meta, "epoch": state["best_epoch"], "val_top1": state["best_val_top1"]})
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)
        if rank == 0:
            _print_epoch(metrics, total_epochs)


def _print_epoch(m: dict[str, Any], total: int) -> None:
    parts = [f"epoch {m['epoch']:>3}/{total} [{m['phase']}]"]
    for key, fmt in (("train_loss", "loss {:.4f}"), ("train_l_lc", "L_LC {:.4f}"), ("train_l_t", "L_T {:.3f}"),
                     ("train_l_b", "L_B {:.3f}"), ("val_top1", "val top-1 {:.1f}"),
                     ("val_twin_retrieval", "static twin {:.1f}%"), ("clips_per_s", "{:.0f} clips/s")):
        if key in m:
            parts.append(fmt.format(m[key]))
    print("[splavu] " + " | ".join(parts), flush=True)


def worker_env(cfg: Config) -> dict[str, str]:
    env = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    if not cfg.scaling.use_gpu:
        env["DS_ACCELERATOR"] = "cpu"  # DeepSpeed on CPU workers (gloo process group)
    return env


def fit(cfg: Config, feature_store: str, train_splits: list[str], val_splits: list[str]):
    """Run (or resume) the TorchTrainer; returns the ray.train.Result."""
    import ray.train
    from ray.train.torch import TorchTrainer

    for k, v in worker_env(cfg).items():
        os.environ.setdefault(k, v)  # the driver's env is inherited by local workers
    resources = {"CPU": cfg.scaling.cpus_per_worker}
    if cfg.scaling.use_gpu:
        resources["GPU"] = cfg.scaling.gpus_per_worker
    storage = cfg.ray.storage_path or str(cfg.output_path / "ray")
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"config": cfg.to_dict(), "feature_store": feature_store,
                           "train_splits": train_splits, "val_splits": val_splits},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=cfg.run_name, storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
        ),
    )
    return trainer.fit()


def export_from_result(result, out_dir: Path) -> dict[str, Path]:
    """Copy the consolidated adapters of the final checkpoint into ``out_dir``."""
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    paths = {}
    with result.checkpoint.as_directory() as ckpt:
        for name in (BEST_ADAPTER, LATEST_ADAPTER):
            src = Path(ckpt, name)
            if src.is_dir():
                dst = out_dir / name
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst)
                paths[name] = dst
        state = json.loads(Path(ckpt, TRAINER_STATE).read_text())
    paths["state"] = state
    return paths
