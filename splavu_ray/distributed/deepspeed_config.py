"""The DeepSpeed config, generated from the project config (the one source of truth).

Written beside a run's outputs as ``deepspeed.json``; the worker passes the same dict to
``deepspeed.initialize``. Only f_A and the task heads live in the engine: the frozen backbone stays out.
"""

from __future__ import annotations

from typing import Any

from ..config import Config


def build_no_ops() -> None:
    """Keep DeepSpeed from running a compiler in the worker: it needs none of its C++ ops here.

    The engine's communication backend (``deepspeed.comm.torch.TorchBackend``) JIT-builds its shared-memory
    op (``deepspeed_shm_comm``: a one-time g++ build with ninja, minutes on 2 CPU cores) whenever
    ``deepspeed.ops.__compatible_ops__`` says it can, and filling that table probes every op, which itself
    runs gcc (a libaio test program). The op serves only ``inference_all_reduce``; training reduces through
    torch.distributed (gloo on CPU, NCCL on GPU) either way, and the optimizer is torch's AdamW, not one of
    DeepSpeed's compiled ones. So the table is filled here, before the first ``deepspeed.initialize``, with
    every op marked unavailable: the same updates, no probe, no build (tests/distributed/test_private_apis.py
    pins that DeepSpeed still reads this table). A table DeepSpeed filled already is left alone."""
    import deepspeed.ops

    if "__compatible_ops__" not in vars(deepspeed.ops):
        from deepspeed.ops.op_builder.all_ops import ALL_OPS

        deepspeed.ops.__compatible_ops__ = dict.fromkeys(ALL_OPS, False)


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
    # Always written: DeepSpeed's own default is 1.0, so leaving the key out for optim.grad_clip=0 would still clip.
    ds["gradient_clipping"] = cfg.optim.grad_clip
    if cfg.deepspeed.zero_stage == 3:
        # Tiny adapters: gather everything at once rather than in many small buckets.
        ds["zero_optimization"].update(stage3_param_persistence_threshold=0, stage3_max_live_parameters=10**9)
    return ds
