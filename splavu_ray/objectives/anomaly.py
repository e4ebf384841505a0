"""Weakly supervised anomaly-detection loss in the style of MGFN (video-level labels only).

Sigmoid cross-entropy of each video's score (the mean of its top-k window scores), temporal smoothness and
sparsity of abnormal videos' scores (weights from RTFM / MGFN), and the feature-magnitude contrastive term:
the top-k-magnitude features of abnormal videos are pushed at least ``margin`` away from normal ones while
videos of the same label are pulled together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _topk_mask(values: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """(B, L) -> (B, L) float weights averaging each row's top-k valid entries (k capped by length)."""
    filled = values.masked_fill(~mask, float("-inf"))
    kk = min(k, values.shape[1])
    idx = filled.topk(kk, dim=1).indices
    sel = torch.zeros_like(values).scatter(1, idx, 1.0) * mask.to(values.dtype)
    return sel / sel.sum(1, keepdim=True).clamp_min(1.0)


def anomaly_loss(logits: torch.Tensor, mags: torch.Tensor, feats: torch.Tensor, mask: torch.Tensor,
                 labels: torch.Tensor, cfg) -> dict[str, torch.Tensor]:
    """MGFN-style weakly supervised loss (cfg: the anomaly task settings, eval.anomaly). labels (B,) in {0, 1}."""
    labels = labels.float()
    scores = torch.sigmoid(logits.float()) * mask
    video_score = (scores * _topk_mask(scores.detach(), mask, cfg.topk)).sum(1)
    l_cls = F.binary_cross_entropy(video_score.clamp(1e-6, 1 - 1e-6), labels)
    ab = labels > 0.5
    pair = mask[:, 1:] & mask[:, :-1]
    smooth = (((scores[:, 1:] - scores[:, :-1]) ** 2) * pair).sum(1)
    sparse = scores.sum(1)
    l_smooth = (smooth * ab).sum() / ab.sum().clamp_min(1)
    l_sparse = (sparse * ab).sum() / ab.sum().clamp_min(1)
    # Magnitude contrastive term on the mean feature of each video's top-k-magnitude windows.
    top = (feats.float() * _topk_mask(mags.detach().float(), mask, cfg.topk).unsqueeze(-1)).sum(1)
    dist = torch.cdist(top, top)  # (B, B)
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pull = dist.pow(2)[same & off]
    push = F.relu(cfg.margin - dist).pow(2)[~same]
    l_mc = (pull.mean() if pull.numel() else dist.sum() * 0.0) + (push.mean() if push.numel() else dist.sum() * 0.0)
    total = l_cls + cfg.w_smooth * l_smooth + cfg.w_sparse * l_sparse + cfg.w_mc * l_mc
    return {"loss": total, "cls": l_cls.detach(), "smooth": l_smooth.detach(), "sparse": l_sparse.detach(),
            "mc": l_mc.detach()}
