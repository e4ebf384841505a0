"""Probes trained on frozen (raw or anonymized) features: privacy attackers and the action probe.

Plain PyTorch on in-memory arrays; metrics from splavu_ray.metrics (scikit-learn).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import metrics


def _standardize(train: np.ndarray, *others: np.ndarray):
    # z-score with train statistics: same treatment for raw and anonymized features, and a
    # stronger (fairer) attack than raw scales would give.
    flat = train.reshape(-1, train.shape[-1])
    mu, sd = flat.mean(0), flat.std(0) + 1e-6
    return [(a - mu) / sd for a in (train, *others)]


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn, epochs: int, lr: float,
         weight_decay: float, seed: int, batch_size: int = 64) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    # The paper's attacker: reduce-on-plateau, x1/5.
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.2, patience=10)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step(total / len(x))
    return model.eval()


def mlp_attacker(dim: int, n_out: int, hidden: int | None = None) -> nn.Module:
    """The paper's attacker: Linear(d, d) - ReLU - Linear(d, n_attributes)."""
    hidden = hidden or dim
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


@dataclass
class AttackResult:
    cmap: float
    macro_f1: float
    per_attribute: dict[str, float]

    def as_dict(self) -> dict:
        return {"cmap": self.cmap, "macro_f1": self.macro_f1, "per_attribute": self.per_attribute}


def attack(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
           names: list[str], kind: str = "mlp", epochs: int = 100, lr: float = 1e-3,
           weight_decay: float = 0.0, hidden: int | None = None, seed: int = 0) -> AttackResult:
    """Train a privacy attacker WITH labels on (N, d) features; score it on the test split."""
    if train_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"attacker features must be (N, d) with equal d, got {train_x.shape} and {test_x.shape}")
    torch.manual_seed(seed)
    xtr, xte = _standardize(train_x.astype(np.float32), test_x.astype(np.float32))
    dim, n_out = xtr.shape[1], train_y.shape[1]
    model = mlp_attacker(dim, n_out, hidden) if kind == "mlp" else nn.Linear(dim, n_out)
    _fit(model, torch.from_numpy(xtr), torch.from_numpy(train_y.astype(np.float32)),
         nn.BCEWithLogitsLoss(), epochs, lr, weight_decay, seed)
    with torch.no_grad():
        probs = torch.sigmoid(model(torch.from_numpy(xte))).numpy()
    return AttackResult(metrics.cmap(probs, test_y), metrics.macro_f1(probs, test_y),
                        metrics.per_attribute_ap(probs, test_y, names))


def action_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 num_classes: int, epochs: int = 100, lr: float = 1e-3, seed: int = 0) -> float:
    """Linear probe on clip features (N, L, d): trained on every clip, tested with the softmax
    averaged over each test video's L clips. Returns top-1 in percent."""
    torch.manual_seed(seed)
    xtr, xte = _standardize(train_x.astype(np.float32), test_x.astype(np.float32))
    n, length, dim = xtr.shape
    clips = torch.from_numpy(xtr.reshape(n * length, dim))
    labels = torch.from_numpy(np.repeat(train_y.astype(np.int64), length))
    model = _fit(nn.Linear(dim, num_classes), clips, labels, nn.CrossEntropyLoss(), epochs, lr, 1e-4, seed)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(xte)), dim=-1).mean(dim=1).numpy()
    return metrics.top1(probs, test_y)
