"""One SPLAVU training step and its epoch loop, in plain PyTorch (no Ray, no DeepSpeed).

The Ray Train worker loop (splavu_ray.trainer) wraps ``SplavuModel`` in a DeepSpeed engine and
calls these functions; tests call them directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .adapter import AnonymizingAdapter
from .anomaly import AnomalyHead, anomaly_loss
from .heads import ActionHead
from .losses import LossWeights, action_cross_entropy, latent_consistency, nt_xent, splavu_total
from .tad import TADHead, TADOutput, tad_loss


@dataclass
class SequenceBatch:
    """Untrimmed videos for the TAD / AD heads: padded window features and their weak or strong labels."""

    feats: torch.Tensor  # (B, L, d) raw window features
    mask: torch.Tensor  # (B, L) True on valid windows
    labels: torch.Tensor  # TAD: (B, S) segment classes (-1 = padding); AD: (B,) video labels
    segments: torch.Tensor | None = None  # TAD: (B, S, 2) segments in windows

    def to(self, device, dtype=None) -> "SequenceBatch":
        seg = self.segments.to(device) if self.segments is not None else None
        return SequenceBatch(self.feats.to(device, dtype), self.mask.to(device), self.labels.to(device), seg)


class ModelOutput(NamedTuple):
    z: torch.Tensor | None  # f_A(clips)
    zs: torch.Tensor | None  # f_A(static clips)
    logits: torch.Tensor  # action logits
    tad: TADOutput | None = None
    ad: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (logits, magnitudes, features)


class SplavuModel(nn.Module):
    """Everything that trains: f_A and the task heads (one DeepSpeed engine holds all of it).

    The TAD and AD heads exist only when their task is on (tad_classes > 0, anomaly=True), so a run with
    both weights at 0 has exactly the parameters (and checkpoints) of an action-only run.
    """

    def __init__(self, adapter: AnonymizingAdapter, num_actions: int, tad_classes: int = 0, anomaly: bool = False,
                 loss_cfg=None):
        super().__init__()
        self.adapter = adapter
        self.action_head = ActionHead(adapter.dim, num_actions)
        tad_h, tad_l, ad_h = ((loss_cfg.tad.hidden, loss_cfg.tad.levels, loss_cfg.ad.hidden) if loss_cfg is not None
                              else (128, 3, 128))
        self.tad_head = TADHead(adapter.dim, tad_classes, tad_h, tad_l) if tad_classes else None
        self.ad_head = AnomalyHead(adapter.dim, ad_h) if anomaly else None

    def forward(self, clips: torch.Tensor, static: torch.Tensor | None = None, raw_heads: bool = False,
                tad: SequenceBatch | None = None, ad: SequenceBatch | None = None) -> ModelOutput:
        """Everything goes through forward so ZeRO-3 can gather parameters.

        raw_heads: the heads-first phase; the heads see RAW features and f_A's output is multiplied by
        zero (every parameter stays in the graph, as ZeRO's gradient hooks expect) so f_A is untouched.
        """
        if (tad is not None) != (self.tad_head is not None) and self.training:
            raise ValueError("TAD inputs and the TAD head go together (loss.w_tad > 0 needs TAD batches)")
        if (ad is not None) != (self.ad_head is not None) and self.training:
            raise ValueError("AD inputs and the AD head go together (loss.w_ad > 0 needs AD batches)")
        if raw_heads:
            anchor = self.adapter(clips[:, :1]).sum() * 0.0
            f = lambda seq: seq.feats  # noqa: E731
            z = zs = None
            logits = self.action_head(clips) + anchor
        else:
            f = lambda seq: self.adapter(seq.feats, ~seq.mask)  # noqa: E731
            z = self.adapter(clips)
            zs = self.adapter(static) if static is not None else None
            logits = self.action_head(z)
        tad_out = self.tad_head(f(tad), tad.mask) if tad is not None and self.tad_head is not None else None
        ad_out = self.ad_head(f(ad), ad.mask) if ad is not None and self.ad_head is not None else None
        return ModelOutput(z, zs, logits, tad_out, ad_out)


@dataclass
class Batch:
    clips: torch.Tensor  # (B, L, d) raw clip features of each video
    static: torch.Tensor  # (B, K, d) raw static-clip features of each video
    action: torch.Tensor  # (B,) int64
    tad: SequenceBatch | None = None  # untrimmed videos with segments (co-training TAD)
    ad: SequenceBatch | None = None  # untrimmed videos with video labels (co-training AD)

    def to(self, device, dtype=None) -> "Batch":
        return Batch(self.clips.to(device, dtype), self.static.to(device, dtype), self.action.to(device),
                     self.tad.to(device, dtype) if self.tad is not None else None,
                     self.ad.to(device, dtype) if self.ad is not None else None)

    @property
    def num_windows(self) -> int:
        """Untrimmed windows in this batch (throughput accounting)."""
        return sum(int(s.mask.sum()) for s in (self.tad, self.ad) if s is not None)


def draw_static_pairs(static: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two different static clips of each video: (B, d), (B, d)."""
    b, k, _ = static.shape
    first = torch.randint(0, k, (b,), generator=gen)
    second = (first + torch.randint(1, k, (b,), generator=gen)) % k  # never the same frame
    rows = torch.arange(b)
    return static[rows, first.to(static.device)], static[rows, second.to(static.device)]


def task_loss(out: ModelOutput, batch: Batch, w_ar: float, loss_cfg=None) -> tuple[torch.Tensor, dict]:
    """L_T* = w_AR * CE + w_TAD * L_TAD + w_AD * L_AD (the terms of tasks that are off are absent)."""
    l_ar = action_cross_entropy(out.logits, batch.action)
    l_t, parts = w_ar * l_ar, {"l_ar": l_ar.detach()}
    if out.tad is not None:
        l_tad = tad_loss(out.tad, batch.tad.segments, batch.tad.labels, loss_cfg.tad.centre_radius)["loss"]
        l_t = l_t + loss_cfg.w_tad * l_tad
        parts["l_tad"] = l_tad.detach()
    if out.ad is not None:
        logits, mags, feats = out.ad
        l_ad = anomaly_loss(logits, mags, feats, batch.ad.mask, batch.ad.labels, loss_cfg.ad)["loss"]
        l_t = l_t + loss_cfg.w_ad * l_ad
        parts["l_ad"] = l_ad.detach()
    return l_t, parts


def head_step_loss(model: SplavuModel, batch: Batch, w_ar: float = 1.0, loss_cfg=None) -> dict[str, torch.Tensor]:
    """Heads-first phase: the task losses on RAW features; f_A stays the identity."""
    out = model(batch.clips, raw_heads=True, tad=batch.tad, ad=batch.ad)
    l_t, parts = task_loss(out, batch, w_ar, loss_cfg)
    return {"loss": l_t, "l_t": l_t.detach(), **parts, "acc": _acc(out.logits, batch.action)}


def gather_across_ranks(z: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(the rows of ``z`` from every rank, in rank order; world size). Only this rank's rows carry
    gradient: the others arrive detached. Without torch.distributed (one process) z itself."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z, 1
    parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, z.detach().contiguous())
    parts[dist.get_rank()] = z
    return torch.cat(parts), len(parts)


def global_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over the GLOBAL batch: every rank's static clips are negatives (METHOD.md: all other
    static clips in the batch), so L_B does not change with the number of workers.

    The value is the global loss on every rank. Its gradient is scaled by the world size. Each rank
    gets only its own rows' share of the gradient, and the data-parallel all-reduce averages over
    ranks, so the scaling makes the update equal the global loss's gradient."""
    pairs, world = gather_across_ranks(torch.stack([z1, z2], dim=1))  # one collective per step: (N, 2, d)
    loss = nt_xent(pairs[:, 0], pairs[:, 1], temperature)
    return loss if world == 1 else loss + (world - 1) * (loss - loss.detach())


def splavu_step_loss(model: SplavuModel, batch: Batch, w: LossWeights, temperature: float,
                     w_ar: float, gen: torch.Generator, loss_cfg=None) -> dict[str, torch.Tensor]:
    """Joint phase: w_LC * L_LC + w_T * L_T* - w_B * L_B (heads see only L_T*); L_B over the global batch."""
    s1, s2 = draw_static_pairs(batch.static, gen)
    n = s1.shape[0]
    out = model(batch.clips, torch.cat([s1, s2]).unsqueeze(1), tad=batch.tad, ad=batch.ad)
    zs = out.zs.squeeze(1)
    l_b = global_nt_xent(zs[:n], zs[n:], temperature)
    l_lc = latent_consistency(out.z, batch.clips)
    l_t, parts = task_loss(out, batch, w_ar, loss_cfg)
    total = splavu_total(l_lc, l_t, l_b, w)
    return {"loss": total, "l_lc": l_lc.detach(), "l_t": l_t.detach(), "l_b": l_b.detach(), **parts,
            "acc": _acc(out.logits, batch.action)}


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
        _, zs, logits, *_ = model(clips[i:i + batch], static[i:i + batch, [0, k // 2]].reshape(-1, 1, static.shape[-1]))
        correct += (logits.argmax(-1) == action[i:i + batch]).sum().item()
        zs = zs.reshape(-1, 2, zs.shape[-1])
        zs1.append(zs[:, 0]), zs2.append(zs[:, 1])
    z1, z2 = torch.cat(zs1), torch.cat(zs2)
    sim = nn.functional.normalize(z1, dim=1) @ nn.functional.normalize(z2, dim=1).t()
    twin = (sim.argmax(1) == torch.arange(len(z1))).float().mean().item()
    model.train()
    return {"val_top1": 100.0 * correct / max(1, len(clips)), "val_nt_xent": nt_xent(z1, z2, temperature).item(),
            "val_twin_retrieval": 100.0 * twin}
