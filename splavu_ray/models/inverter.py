"""The feature inverter: a small convolutional decoder from one feature vector back to the frame it came from.

What a feature-inversion attacker trains (docs/privacy.md): a d-dimensional feature of a static clip (one
frame tiled over the clip, what the privacy attackers read too) goes through a linear layer to a 4x4 grid
of ``width`` channels, then doubling stages (nearest upsampling, 3x3 convolution, GroupNorm, ReLU; the
channels halve each stage, to no fewer than 16) up to the frame side, and a 3x3 convolution with a sigmoid
to RGB in [0, 1]. It is trained with a pixel loss (mean squared error) on pairs (feature, frame) of the
attacker's own data; plain PyTorch, no Ray.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class FeatureInverter(nn.Module):
    """(N, d) features -> (N, 3, size, size) frames in [0, 1]."""

    def __init__(self, dim: int, size: int, width: int = 64):
        super().__init__()
        if size < 8:
            raise ValueError(f"inverter output size must be >= 8 pixels, got {size}")
        self.dim, self.size = dim, size
        stages = max(1, math.ceil(math.log2(size / 4)))
        self.stem = nn.Linear(dim, width * 16)
        self.width = width
        blocks, c = [], width
        for _ in range(stages):
            out = max(16, c // 2)
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, out, 3, padding=1),
                       nn.GroupNorm(min(8, out), out), nn.ReLU(inplace=True)]
            c = out
        self.body = nn.Sequential(*blocks)
        self.head = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(feats)).view(-1, self.width, 4, 4)
        x = self.body(x)
        if x.shape[-1] != self.size:  # a side that is not 4 * 2^k
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return torch.sigmoid(self.head(x))


def fit_inverter(feats: np.ndarray, frames: np.ndarray, *, epochs: int, lr: float, width: int, batch_size: int,
                 seed: int, device: str = "cpu") -> tuple[FeatureInverter, dict[str, float]]:
    """Train an inverter on (N, d) standardised features and (N, S, S, 3) float frames in [0, 1].

    Returns the model (eval mode, on CPU) and its final training loss."""
    if len(feats) != len(frames) or not len(feats):
        raise ValueError(f"inverter: {len(feats)} features for {len(frames)} frames")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = FeatureInverter(feats.shape[1], frames.shape[1], width).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * -(-len(feats) // batch_size)))
    x = torch.tensor(feats, dtype=torch.float32)
    y = torch.tensor(frames, dtype=torch.float32).permute(0, 3, 1, 2)
    loss_sum, seen = 0.0, 0
    model.train()
    for _ in range(epochs):
        loss_sum, seen = 0.0, 0
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            xb, yb = x[idx].to(device), y[idx].to(device)
            loss = F.mse_loss(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
    model.eval()
    return model.cpu(), {"train_mse": loss_sum / max(1, seen)}


@torch.no_grad()
def invert(model: FeatureInverter, feats: np.ndarray, batch: int = 256) -> np.ndarray:
    """(N, d) features -> (N, S, S, 3) float32 frames in [0, 1]."""
    model.eval()
    out = [model(torch.tensor(feats[i:i + batch], dtype=torch.float32)).permute(0, 2, 3, 1).numpy()
           for i in range(0, len(feats), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.size, model.size, 3), np.float32)
