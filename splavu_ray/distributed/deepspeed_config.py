"""The DeepSpeed config, generated from the project config (the one source of truth).

Written beside a run's outputs as ``deepspeed.json``; the worker passes the same dict to
``deepspeed.initialize``. Only f_A and the task heads live in the engine: the frozen backbone stays out.
"""

from __future__ import annotations

from typing import Any

from ..config import Config


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
