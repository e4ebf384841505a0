"""SPLAVU losses (docs/method.md, "Losses"). Pure functions on tensors; no state, no Ray.

Total for the adapter: w_LC * L_LC + w_T * L_T - w_B * L_B, where L_B is the NT-Xent between the
two static clips of each video (f_A maximises it) and L_T the co-training utility loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR NT-Xent: (z1[i], z2[i]) are positives; every other of the 2N vectors is a negative.

    Cosine similarity, no projection head; mean over all 2N anchors.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent expects two (N, d) tensors of equal shape, got {tuple(z1.shape)}, {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def latent_consistency(anonymized: torch.Tensor, raw: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between f_A(h) and h; ``mask`` (B, L) True on valid clips excludes padding."""
    err = (anonymized.float() - raw.float()).pow(2).mean(dim=-1)
    if mask is None:
        return err.mean()
    mask = mask.to(err.dtype)
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def action_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels)


@dataclass(frozen=True)
class LossWeights:
    w_lc: float = 100.0
    w_t: float = 1.0
    w_b: float = 1.0

    @classmethod
    def from_config(cls, cfg) -> "LossWeights":
        return cls(cfg.w_lc, cfg.w_t, cfg.w_b)


def splavu_total(l_lc: torch.Tensor, l_t: torch.Tensor, l_b: torch.Tensor, w: LossWeights) -> torch.Tensor:
    """w_LC * L_LC + w_T * L_T - w_B * L_B."""
    return w.w_lc * l_lc + w.w_t * l_t - w.w_b * l_b
