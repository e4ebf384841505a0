"""One SPLAVU training step, in plain PyTorch (no Ray, no DeepSpeed): the losses of a batch.

- heads-first phase (:func:`head_step_loss`): the task losses on RAW features; f_A stays the identity;
- joint phase (:func:`splavu_step_loss`): w_LC * L_LC + w_T * L_T* - w_B * L_B, where L_B's NT-Xent takes
  its negatives from the global batch of every worker (:func:`global_nt_xent`);
- :func:`validation_metrics`: validation action top-1 and label-free privacy proxies after each epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import AnomalyTaskConfig, Config, TADTaskConfig
from ..objectives.anomaly import anomaly_loss
from ..objectives.detection import tad_loss
from ..objectives.splavu import LossWeights, action_cross_entropy, latent_consistency, nt_xent, splavu_total
from .model import Batch, ModelOutput, SplavuModel


@dataclass(frozen=True)
class Objective:
    """Every weight and setting a step's losses read (from ``loss``, ``eval.tad`` and ``eval.anomaly``)."""

    weights: LossWeights = LossWeights()
    w_ar: float = 1.0
    w_tad: float = 0.0
    w_ad: float = 0.0
    temperature: float = 0.1
    tad: TADTaskConfig = field(default_factory=TADTaskConfig)
    ad: AnomalyTaskConfig = field(default_factory=AnomalyTaskConfig)

    @classmethod
    def from_config(cls, cfg: Config) -> "Objective":
        lc = cfg.loss
        return cls(LossWeights.from_config(lc), lc.w_ar, lc.w_tad, lc.w_ad, lc.temperature, cfg.eval.tad, cfg.eval.anomaly)


def draw_static_pairs(static: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two different static clips of each video: (B, d), (B, d) (or two static frames of (B, K, 3, S, S))."""
    b, k = static.shape[:2]
    first = torch.randint(0, k, (b,), generator=gen)
    second = (first + torch.randint(1, k, (b,), generator=gen)) % k  # never the same frame
    rows = torch.arange(b)
    return static[rows, first.to(static.device)], static[rows, second.to(static.device)]


def task_loss(out: ModelOutput, batch: Batch, obj: Objective) -> tuple[torch.Tensor, dict]:
    """L_T* = w_AR * CE + w_TAD * L_TAD + w_AD * L_AD (the terms of tasks that are off are absent)."""
    l_ar = action_cross_entropy(out.logits, batch.action)
    l_t, parts = obj.w_ar * l_ar, {"l_ar": l_ar.detach()}
    if out.tad is not None:
        l_tad = tad_loss(out.tad, batch.tad.segments, batch.tad.labels, obj.tad.centre_radius)["loss"]
        l_t = l_t + obj.w_tad * l_tad
        parts["l_tad"] = l_tad.detach()
    if out.ad is not None:
        logits, mags, feats = out.ad
        l_ad = anomaly_loss(logits, mags, feats, batch.ad.mask, batch.ad.labels, obj.ad)["loss"]
        l_t = l_t + obj.w_ad * l_ad
        parts["l_ad"] = l_ad.detach()
    return l_t, parts


def head_step_loss(model: SplavuModel, batch: Batch, obj: Objective = Objective()) -> dict[str, torch.Tensor]:
    """Heads-first phase: the task losses on RAW features; f_A stays the identity."""
    out = model(batch.clips, raw_heads=True, tad=batch.tad, ad=batch.ad, frames=batch.frames)
    l_t, parts = task_loss(out, batch, obj)
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
    """NT-Xent over the GLOBAL batch: every rank's static clips are negatives (docs/method.md: all other
    static clips in the batch), so L_B does not change with the number of workers.

    The value is the global loss on every rank. Its gradient is scaled by the world size. Each rank
    gets only its own rows' share of the gradient, and the data-parallel all-reduce averages over
    ranks, so the scaling makes the update equal the global loss's gradient."""
    pairs, world = gather_across_ranks(torch.stack([z1, z2], dim=1))  # one collective per step: (N, 2, d)
    loss = nt_xent(pairs[:, 0], pairs[:, 1], temperature)
    return loss if world == 1 else loss + (world - 1) * (loss - loss.detach())


def splavu_step_loss(model: SplavuModel, batch: Batch, obj: Objective, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Joint phase: w_LC * L_LC + w_T * L_T* - w_B * L_B (heads see only L_T*); L_B over the global batch."""
    # a pixel anonymizer (batch.frames) draws the same pairs of static FRAMES and anonymizes them itself
    s1, s2 = draw_static_pairs(batch.static if batch.static_frames is None else batch.static_frames, gen)
    n = s1.shape[0]
    out = model(batch.clips, torch.cat([s1, s2]).unsqueeze(1), tad=batch.tad, ad=batch.ad, frames=batch.frames)
    zs = out.zs.squeeze(1)
    l_b = global_nt_xent(zs[:n], zs[n:], obj.temperature)
    l_lc = latent_consistency(out.z, batch.clips)
    l_t, parts = task_loss(out, batch, obj)
    total = splavu_total(l_lc, l_t, l_b, obj.weights)
    return {"loss": total, "l_lc": l_lc.detach(), "l_t": l_t.detach(), "l_b": l_b.detach(), **parts,
            "acc": _acc(out.logits, batch.action)}


def _acc(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == labels).float().mean().detach()


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
        # (features (B, K, d), or a pixel anonymizer's static frames (B, K, 3, S, S))
        _, zs, logits, *_ = model(clips[i:i + batch], static[i:i + batch, [0, k // 2]].reshape(-1, 1, *static.shape[2:]))
        correct += (logits.argmax(-1) == action[i:i + batch]).sum().item()
        zs = zs.reshape(-1, 2, zs.shape[-1])
        zs1.append(zs[:, 0]), zs2.append(zs[:, 1])
    z1, z2 = torch.cat(zs1), torch.cat(zs2)
    sim = nn.functional.normalize(z1, dim=1) @ nn.functional.normalize(z2, dim=1).t()
    twin = (sim.argmax(1) == torch.arange(len(z1))).float().mean().item()
    model.train()
    return {"val_top1": 100.0 * correct / max(1, len(clips)), "val_nt_xent": nt_xent(z1, z2, temperature).item(),
            "val_twin_retrieval": 100.0 * twin}
