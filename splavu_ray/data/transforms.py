"""Clip transforms of docs/method.md ("Shapes"), in torch (no torchvision): uint8 (T, H, W, 3) -> float (T, 3, S, S).

- eval: resize the short side to S * 256/224, centre crop S (S=224 gives the usual 256 -> 224).
- train: RandomResizedCrop (scale 0.3-1, ratio 3/4-4/3), the SAME crop for every frame of a clip
  (a per-frame crop would invent motion), then horizontal flip with p=0.5; seeded by a
  torch.Generator so a sample's augmentation is reproducible.
Both normalise with the ImageNet mean/std and accept one clip (T, H, W, 3) or a batch
(B, T, H, W, 3), numpy or torch. The output layout (…, T, 3, S, S) is what transformers'
VJEPA2Model / VideoMAEModel take; a Meta-style (B, C, T, H, W) model needs ``.transpose(1, 2)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_RESIZE_RATIO = 256 / 224


def _as_batch(frames: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, bool]:
    """uint8 (B, T, 3, H, W) view of one clip or a batch, and whether the input was batched."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 frames, got {x.dtype}")
    if x.ndim not in (4, 5) or x.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) or (B, T, H, W, 3) frames, got shape {tuple(x.shape)}")
    batched = x.ndim == 5
    x = x if batched else x.unsqueeze(0)
    return x.permute(0, 1, 4, 2, 3), batched


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of float pixels in [0, 255], channel axis at -3."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1) * 255
    return (x - mean) / std


def _resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize (N, 3, h, w) float frames; antialiased so shrinking does not alias."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


def eval_transform(frames: np.ndarray | torch.Tensor, size: int = 224) -> torch.Tensor:
    """Resize the short side to round(size * 256/224), centre crop ``size``, normalise."""
    x, batched = _as_batch(frames)
    b, t, c, h, w = x.shape
    short = round(size * EVAL_RESIZE_RATIO)
    nh, nw = (short, max(size, round(w * short / h))) if h <= w else (max(size, round(h * short / w)), short)
    y = _resize(x.reshape(b * t, c, h, w).float(), nh, nw)
    top, left = (nh - size) // 2, (nw - size) // 2
    y = normalize(y[:, :, top : top + size, left : left + size]).reshape(b, t, c, size, size)
    return y if batched else y[0]


def random_resized_crop_params(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.3, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width): torchvision's RandomResizedCrop sampling rule
    (10 tries at a random area fraction and log-uniform aspect ratio, then a centre crop)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(4, generator=generator).tolist()
        target = area * (scale[0] + u[0] * (scale[1] - scale[0]))
        aspect = math.exp(log_ratio[0] + u[1] * (log_ratio[1] - log_ratio[0]))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = min(int(u[2] * (height - h + 1)), height - h)
            left = min(int(u[3] * (width - w + 1)), width - w)
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def train_transform(
    frames: np.ndarray | torch.Tensor,
    size: int = 224,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = (0.3, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip_p: float = 0.5,
) -> torch.Tensor:
    """RandomResizedCrop to ``size`` + horizontal flip, one draw per clip, then normalise."""
    x, batched = _as_batch(frames)
    b, t, c, h, w = x.shape
    out = torch.empty((b, t, c, size, size), dtype=torch.float32)
    for i in range(b):  # crops differ in size per clip, so the resize runs per clip
        top, left, ch, cw = random_resized_crop_params(h, w, scale, ratio, generator)
        y = _resize(x[i, :, :, top : top + ch, left : left + cw].float(), size, size)
        if torch.rand(1, generator=generator).item() < hflip_p:
            y = y.flip(-1)
        out[i] = y
    out = normalize(out)
    return out if batched else out[0]


def tile_static(frames: torch.Tensor | np.ndarray, clip_len: int = 16) -> torch.Tensor:
    """Static clips: each frame (K, ...) repeated ``clip_len`` times -> (K, clip_len, ...).

    A view (expand), so tiling costs no memory; call ``.contiguous()`` if a model needs it.
    Transform static frames first (as K clips of length 1), then tile, so all T copies share one crop.
    """
    x = torch.as_tensor(frames)
    if x.ndim == 5 and x.shape[1] == 1:  # (K, 1, 3, S, S) from a transform
        x = x[:, 0]
    return x.unsqueeze(1).expand(x.shape[0], clip_len, *x.shape[1:])
