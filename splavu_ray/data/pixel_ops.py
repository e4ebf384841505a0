"""Pixel-level privacy baselines: what a frame goes through BEFORE the frozen encoder (docs/privacy.md).

The classic ways to hide a person in a video work on pixels; SPLAVU works on features. To compare them on
the same evaluation suite, a baseline transforms every decoded uint8 frame, then the encoder embeds the
result into a feature store of its own (the transform is part of the store's identity, see
``data.pixel.transform``). The operations, on (..., H, W, 3) uint8 arrays (numpy or torch), same shape out:

- ``downsample2`` / ``downsample4``: average-pool the frame by 2 (4) and scale it back up (bilinear), so the
  encoder sees the detail of a camera with half (a quarter of) the resolution;
- ``blur``: a Gaussian blur of standard deviation ``blur_sigma`` times the frame's short side;
- ``pixelate``: the mosaic of broadcast TV: the mean colour of blocks, ``pixelate_blocks`` across the short
  side, each block filled with it;
- ``blacken``: the person region set to black, from the row's person mask (splavu_ray.data.person_masks;
  the caller gives the masks of the decoded frames, (..., H, W) bool).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

PIXEL_TRANSFORMS = ("downsample2", "downsample4", "blur", "pixelate", "blacken")
NEEDS_MASK = ("blacken",)  # transforms that need the manifest's person_mask column

# The learned pixel anonymizer f_P (splavu_ray.models.pixel_anonymizer): data.pixel.transform="learned" with
# data.pixel.anonymizer=its export. The net lives with the models; the embedder applies it after the eval
# crop, where the backbone's input is made. Its weights' digest, not its path, is part of a store's identity.
LEARNED = "learned"
ANONYMIZER_WEIGHTS = "pixel_anonymizer.safetensors"
ANONYMIZER_CONFIG = "pixel_anonymizer.json"


def anonymizer_weights_file(path: str) -> str:
    """The weights file of a pixel anonymizer export (``path``: its folder or one of its files)."""
    import os

    folder = os.path.dirname(path) if os.path.isfile(path) else path
    weights = os.path.join(os.path.expanduser(folder), ANONYMIZER_WEIGHTS)
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{path} is not a pixel anonymizer export: no {ANONYMIZER_WEIGHTS} in {folder} "
                                "(python -m splavu_ray.train --config splavu_ray/configs/pixel_unet.yaml writes "
                                "best_pixel_anonymizer/ into its output_dir)")
    return weights


def anonymizer_digest(path: str) -> str:
    """sha256 of a pixel anonymizer's weights: what the feature store's identity records for it."""
    import hashlib

    with open(anonymizer_weights_file(path), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _as_nchw(frames) -> tuple[torch.Tensor, tuple[int, ...], bool]:
    is_numpy = isinstance(frames, np.ndarray)
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 (..., H, W, 3) frames, got {tuple(x.shape)} {x.dtype}")
    lead = tuple(x.shape[:-3])
    h, w = x.shape[-3:-1]
    return x.reshape(-1, h, w, 3).permute(0, 3, 1, 2).float(), lead, is_numpy


def _back(y: torch.Tensor, lead: tuple[int, ...], is_numpy: bool):
    out = y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    out = out.reshape(*lead, *out.shape[1:])
    return out.numpy() if is_numpy else out


def downsample(frames, factor: int):
    x, lead, is_numpy = _as_nchw(frames)
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, h // factor), max(1, w // factor)), mode="area")
    return _back(F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False), lead, is_numpy)


def gaussian_blur(frames, sigma_fraction: float):
    x, lead, is_numpy = _as_nchw(frames)
    sigma = max(1e-3, sigma_fraction * min(x.shape[-2:]))
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    pad = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(pad, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # separable: rows, then columns
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return _back(y, lead, is_numpy)


def pixelate(frames, blocks: int):
    x, lead, is_numpy = _as_nchw(frames)
    h, w = x.shape[-2:]
    side = max(1, round(min(h, w) / blocks))
    small = F.adaptive_avg_pool2d(x, (max(1, round(h / side)), max(1, round(w / side))))
    return _back(F.interpolate(small, size=(h, w), mode="nearest"), lead, is_numpy)


def blacken(frames, mask):
    """Frames with every pixel where ``mask`` (..., H, W) is True set to 0 (black); the others unchanged."""
    is_numpy = isinstance(frames, np.ndarray)
    x = torch.as_tensor(frames)
    m = torch.as_tensor(np.asarray(mask, dtype=bool))
    if x.dtype != torch.uint8 or x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 (..., H, W, 3) frames, got {tuple(x.shape)} {x.dtype}")
    if tuple(m.shape) != tuple(x.shape[:-1]):
        raise ValueError(f"blacken: mask shape {tuple(m.shape)} does not match frames {tuple(x.shape[:-1])}")
    out = x.masked_fill(m.unsqueeze(-1), 0)
    return out.numpy() if is_numpy else out


def apply_pixel_transform(frames, name: str, blur_sigma: float = 0.03, pixelate_blocks: int = 8, mask=None):
    """One of :data:`PIXEL_TRANSFORMS` on (..., H, W, 3) uint8 frames (``mask``: the frames' person masks,
    (..., H, W) bool, for the transforms of :data:`NEEDS_MASK`)."""
    if name in NEEDS_MASK and mask is None:
        raise ValueError(f"pixel transform {name!r} needs the frames' person masks")
    if name == "blacken":
        return blacken(frames, mask)
    if name == "downsample2":
        return downsample(frames, 2)
    if name == "downsample4":
        return downsample(frames, 4)
    if name == "blur":
        return gaussian_blur(frames, blur_sigma)
    if name == "pixelate":
        return pixelate(frames, pixelate_blocks)
    raise ValueError(f"unknown pixel transform {name!r}; choose from {', '.join(PIXEL_TRANSFORMS)}")
