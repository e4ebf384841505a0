"""Training in one process, without Ray or DeepSpeed: the same epoch loop as the Ray Train worker.

For fast recipe searches on a cached feature store (benchmarks/method_search.py) and for tests. Same
batches (``rank_batches`` with one rank), same steps, same optimiser groups and schedule, same selection
rule; the Ray Train worker differs only in sharding batches over ranks and stepping through DeepSpeed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..config import Config
from ..data.feature_store import FeatureStore
from .batches import CachedSource
from .loop import TorchStepper, new_state, run_epoch, steps_per_epoch, total_epochs
from .model import SplavuModel, build_model
from .schedule import build_optimizer
from .steps import Objective


@dataclass
class ReplayResult:
    model: SplavuModel
    state: dict  # the loop's state: best epoch, best validation top-1, every epoch's metrics
    joint_history: list[dict] = field(default_factory=list)  # metrics of each joint epoch
    joint_adapters: list[dict[str, torch.Tensor]] = field(default_factory=list)  # f_A's weights after each


def train_in_process(cfg: Config, store: FeatureStore | str, keep_adapters: bool = True,
                     on_epoch: Callable[[dict], None] | None = None) -> ReplayResult:
    """Train on ``data.train_split`` of the store, validating on ``data.val_split`` after every epoch."""
    torch.manual_seed(cfg.seed)
    source = CachedSource(store, [cfg.data.train_split], [cfg.data.val_split], cfg)
    model = build_model(cfg, source)
    optimizer, scheduler = build_optimizer(model, cfg.optim, steps_per_epoch(source.num_train, cfg))
    stepper, obj, state = TorchStepper(model, optimizer, scheduler, cfg.optim.grad_clip), Objective.from_config(cfg), new_state()
    result = ReplayResult(model, state)
    for epoch in range(total_epochs(cfg)):
        metrics, _ = run_epoch(model, stepper, source, epoch, cfg, obj, state)
        if metrics["phase"] == "joint":
            result.joint_history.append(metrics)
            if keep_adapters:
                result.joint_adapters.append({k: v.clone() for k, v in model.adapter.state_dict().items()})
        if on_epoch:
            on_epoch(metrics)
    return result
