"""The optimiser and its learning-rate schedule: AdamW with linear lr scaling, warm-up, cosine decay.

Shared by the DeepSpeed worker (which hands the optimiser and scheduler to ``deepspeed.initialize``)
and the one-process replay, so both train with the same parameter groups and the same schedule.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import OptimConfig


def lr_lambda(step: int, total_steps: int, warmup_steps: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the base lr: linear warm-up, then cosine/linear decay to min_ratio."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
    return min_ratio + (1 - min_ratio) * decay


def scaled_lr(lr: float, batch_size: int, base_batch_size: int) -> float:
    """Linear scaling rule."""
    return lr * batch_size / base_batch_size


def param_groups(model: nn.Module, weight_decay: float, lr: float, head_lr_scale: float = 1.0) -> list[dict]:
    """No weight decay on biases and norm weights; the task heads (every parameter outside ``adapter``) at
    ``head_lr_scale`` x lr, so a linear head can keep up with f_A while f_A moves slowly."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        groups.setdefault((name.startswith("adapter."), p.ndim >= 2), []).append(p)
    # adapter groups first: the trainer reports group 0's lr as the run's lr
    return [{"params": ps, "weight_decay": weight_decay if decayed else 0.0,
             "lr": lr if is_adapter else lr * head_lr_scale}
            for (is_adapter, decayed), ps in sorted(groups.items(), reverse=True)]


def build_optimizer(model: nn.Module, o: OptimConfig, steps_per_epoch: int):
    """(AdamW, LambdaLR) for ``model``: lr scaled from ``o.base_batch_size``, heads at ``o.head_lr_scale``x,
    warm-up then ``o.schedule`` decay over all head + joint epochs."""
    lr = scaled_lr(o.lr, o.batch_size, o.base_batch_size)
    optimizer = torch.optim.AdamW(param_groups(model, o.weight_decay, lr, o.head_lr_scale), lr=lr)
    total = (o.head_epochs + o.epochs) * steps_per_epoch
    warmup = int(o.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_lambda(s, total, warmup, o.schedule, o.min_lr_ratio))
    return optimizer, scheduler
