"""Task heads on (anonymized) clip features: action recognition, temporal action detection, anomaly detection.

Each head owns exactly one task loss (splavu_ray.objectives). The TAD head follows the TriDet /
ActionFormer layout and the anomaly head MGFN's (docs/method.md says where we simplify them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.sequences import AnomalyError, TADError


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


class _MaskedConv(nn.Module):
    """Conv1d + LayerNorm + ReLU that keeps padded positions at zero."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 3, stride=stride, padding=1)
        self.norm = nn.LayerNorm(c_out)
        self.stride = stride

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, C, L), mask: (B, L)
        if self.stride > 1:
            mask = mask[:, ::self.stride]
        y = self.conv(x)[..., :mask.shape[1]]
        y = F.relu(self.norm(y.transpose(1, 2)).transpose(1, 2))
        return y * mask.unsqueeze(1).to(y.dtype), mask


@dataclass
class TADOutput:
    cls: list[torch.Tensor]  # per level (B, L_l, C) logits
    reg: list[torch.Tensor]  # per level (B, L_l, 2) distances to start/end, in strides of the level
    masks: list[torch.Tensor]  # per level (B, L_l) valid points
    strides: list[int]


class TADHead(nn.Module):
    """Feature pyramid + shared classification / regression branches (ActionFormer / TriDet layout)."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 128, levels: int = 3, prior: float = 0.01):
        super().__init__()
        if num_classes < 1:
            raise TADError(f"a detector needs at least one class, got {num_classes}")
        self.num_classes, self.levels = num_classes, levels
        self.embed = nn.ModuleList([_MaskedConv(dim, hidden), _MaskedConv(hidden, hidden)])
        self.down = nn.ModuleList([_MaskedConv(hidden, hidden, stride=2) for _ in range(levels - 1)])
        self.cls_branch = _MaskedConv(hidden, hidden)
        self.cls_out = nn.Conv1d(hidden, num_classes, 3, padding=1)
        self.reg_branch = _MaskedConv(hidden, hidden)
        self.reg_out = nn.Conv1d(hidden, 2, 3, padding=1)
        self.scale = nn.Parameter(torch.ones(levels))  # per-level regression scale (FCOS/ActionFormer)
        # Focal-loss prior: start every point at p = prior so the many negatives do not swamp step 1.
        nn.init.constant_(self.cls_out.bias, -float(np.log((1 - prior) / prior)))

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> TADOutput:
        """feats (B, L, d), mask (B, L) True on valid windows."""
        if feats.ndim != 3:
            raise TADError(f"TADHead expects (B, L, d) window features, got shape {tuple(feats.shape)}")
        if mask is None:
            mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        x = feats.transpose(1, 2) * mask.unsqueeze(1).to(feats.dtype)
        for layer in self.embed:
            x, mask = layer(x, mask)
        out = TADOutput([], [], [], [])
        for level in range(self.levels):
            if level:
                x, mask = self.down[level - 1](x, mask)
            m = mask.unsqueeze(1).to(x.dtype)
            c = self.cls_out(self.cls_branch(x, mask)[0]) * m
            r = F.relu(self.reg_out(self.reg_branch(x, mask)[0]) * self.scale[level]) * m
            out.cls.append(c.transpose(1, 2))
            out.reg.append(r.transpose(1, 2))
            out.masks.append(mask)
            out.strides.append(2 ** level)
        return out


class AnomalyHead(nn.Module):
    """Per-window anomaly logits and feature magnitudes from a (B, L, d) sequence."""

    def __init__(self, dim: int, hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, hidden, 3, padding=1)
        self.conv2 = nn.Conv1d(hidden, hidden, 3, padding=1)
        self.norm = nn.LayerNorm(hidden)
        self.score = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Dropout(dropout),
                                   nn.Linear(hidden // 2, 1))

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (logits (B, L), magnitudes (B, L), embedded features (B, L, hidden))."""
        if feats.ndim != 3:
            raise AnomalyError(f"AnomalyHead expects (B, L, d) window features, got shape {tuple(feats.shape)}")
        if mask is None:
            mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        m = mask.unsqueeze(1).to(feats.dtype)
        x = F.relu(self.conv1(feats.transpose(1, 2) * m)) * m
        x = F.relu(self.conv2(x)) * m + x  # residual temporal context
        h = self.norm(x.transpose(1, 2)) * mask.unsqueeze(-1).to(x.dtype)
        # Magnitude before the norm: MGFN's signal is how strongly a window's features respond.
        mag = x.transpose(1, 2).norm(dim=-1)
        return self.score(h).squeeze(-1), mag, x.transpose(1, 2)
