"""One SPLAVU training step and its epoch loop, in plain PyTorch (no Ray, no DeepSpeed).

The Ray Train worker loop (splavu_ray.trainer) wraps ``SplavuModel`` in a DeepSpeed engine and
calls these functions; tests call them directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .adapter import AnonymizingAdapter
from .heads import ActionHead
from .losses import LossWeights, action_cross_entropy, latent_consistency, nt_xent, splavu_total


class SplavuModel(nn.Module):
    """Everything that trains: f_A and the task heads (one DeepSpeed engine holds all of it)."""

    def __init__(self, adapter: AnonymizingAdapter, num_actions: int):
        super().__init__()
        self.adapter = adapter
        self.action_head = ActionHead(adapter.dim, num_actions)

    def forward(self, clips: torch.Tensor, static: torch.Tensor | None = None, raw_heads: bool = False):
        """Returns (z, zs, logits). Everything goes through forward so ZeRO-3 can gather parameters.

        raw_heads: the heads-first phase; logits come from RAW clips and f_A's output is multiplied by
        zero (every parameter stays in the graph, as ZeRO's gradient hooks expect) so f_A is untouched.
        """
        if raw_heads:
            anchor = self.adapter(clips[:, :1]).sum() * 0.0
            return None, None, self.action_head(clips) + anchor
        z = self.adapter(clips)
        zs = self.adapter(static) if static is not None else None
        return z, zs, self.action_head(z)


@dataclass
class Batch:
    clips: torch.Tensor  # (B, L, d) raw clip features of each video
    static: torch.Tensor  # (B, K, d) raw static-clip features of each video
    action: torch.Tensor  # (B,) int64

    def to(self, device, dtype=None) -> "Batch":
        return Batch(self.clips.to(device, dtype), self.static.to(device, dtype), self.action.to(device))


def draw_static_pairs(static: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two different static clips of each video: (B, d), (B, d)."""
    b, k, _ = static.shape
    first = torch.randint(0, k, (b,), generator=gen)
    second = (first + torch.randint(1, k, (b,), generator=gen)) % k  # never the same frame
    rows = torch.arange(b)
    return static[rows, first.to(static.device)], static[rows, second.to(static.device)]


def head_step_loss(model: SplavuModel, batch: Batch) -> dict[str, torch.Tensor]:
    """Heads-first phase: the task loss on RAW features; f_A stays the identity."""
    _, _, logits = model(batch.clips, raw_heads=True)
    l_t = action_cross_entropy(logits, batch.action)
    return {"loss": l_t, "l_t": l_t.detach(), "acc": _acc(logits, batch.action)}


def splavu_step_loss(model: SplavuModel, batch: Batch, w: LossWeights, temperature: float,
                     w_ar: float, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Joint phase: w_LC * L_LC + w_T * L_T - w_B * L_B (heads see only L_T)."""
    s1, s2 = draw_static_pairs(batch.static, gen)
    n = s1.shape[0]
    z, zs, logits = model(batch.clips, torch.cat([s1, s2]).unsqueeze(1))
    zs = zs.squeeze(1)
    l_b = nt_xent(zs[:n], zs[n:], temperature)
    l_lc = latent_consistency(z, batch.clips)
    l_t = w_ar * action_cross_entropy(logits, batch.action)
    total = splavu_total(l_lc, l_t, l_b, w)
    return {"loss": total, "l_lc": l_lc.detach(), "l_t": l_t.detach(), "l_b": l_b.detach(),
            "acc": _acc(logits, batch.action)}


def _acc(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == labels).float().mean().detach()


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


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and norm weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The global order of videos in an epoch: a pure function of (seed, epoch) so resumes repeat it."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def rank_batches(n: int, global_batch: int, rank: int, world: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Indices of this rank's micro-batches: every rank gets the same number (last partial dropped)."""
    order = epoch_permutation(n, seed, epoch)
    per_rank = global_batch // world
    steps = n // global_batch
    return [order[s * global_batch + rank * per_rank: s * global_batch + (rank + 1) * per_rank] for s in range(steps)]


@torch.no_grad()
def validation_metrics(model: SplavuModel, clips: torch.Tensor, static: torch.Tensor, action: torch.Tensor,
                       temperature: float, batch: int = 256) -> dict[str, float]:
    """Utility (action top-1 of the head on anonymized clips) and privacy proxies on static pairs:
    NT-Xent between two static clips of each video and how often a video's static clip retrieves its
    twin among all videos (lower = appearance less identifiable)."""
    model.eval()
    correct, zs1, zs2 = 0, [], []
    k = static.shape[1]
    for i in range(0, len(clips), batch):
        _, zs, logits = model(clips[i:i + batch], static[i:i + batch, [0, k // 2]].reshape(-1, 1, static.shape[-1]))
        correct += (logits.argmax(-1) == action[i:i + batch]).sum().item()
        zs = zs.reshape(-1, 2, zs.shape[-1])
        zs1.append(zs[:, 0]), zs2.append(zs[:, 1])
    z1, z2 = torch.cat(zs1), torch.cat(zs2)
    sim = nn.functional.normalize(z1, dim=1) @ nn.functional.normalize(z2, dim=1).t()
    twin = (sim.argmax(1) == torch.arange(len(z1))).float().mean().item()
    model.train()
    return {"val_top1": 100.0 * correct / max(1, len(clips)), "val_nt_xent": nt_xent(z1, z2, temperature).item(),
            "val_twin_retrieval": 100.0 * twin}
