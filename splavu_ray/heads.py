"""Task heads on (anonymized) clip features. Each head owns exactly one task loss."""

from __future__ import annotations

import torch
from torch import nn


class ActionHead(nn.Module):
    """Linear action classifier applied to every clip; video logits = mean over valid clips."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.fc(feats)  # (B, L, C) or (B, C)
        if logits.ndim == 2:
            return logits
        if mask is None:
            return logits.mean(dim=1)
        m = mask.unsqueeze(-1).to(logits.dtype)
        return (logits * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
