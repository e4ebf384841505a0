"""I3D: the Inflated 3D ConvNet (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017).

The RGB stream of the kinetics-i3d / pytorch-i3d releases: Inception-v1 with every 2-D filter inflated to
3-D, batch norm (eps 1e-3) and ReLU after every convolution, TensorFlow "SAME" padding (computed from the
input size, zeros, as the public PyTorch port does), and no classifier here: the encoder stops at Mixed_5c.

Shapes (``I3DEncoder``): clips (B, T, 3, H, W), ImageNet-normalised like every splavu_ray backbone; they
are mapped back to the [-1, 1] pixel range the public weights were trained on. Mixed_5c is a
(B, 1024, ceil(T/8), ceil(H/32), ceil(W/32)) map; it is averaged over space, giving **T' = ceil(T/8)
tokens of 1024-d** per clip: (B, 2, 1024) for 16 frames at 224 px. The frozen backbone then mean-pools
the tokens like any other encoder (the public model's 2x7x7 average pool, for 16 x 224 x 224 clips).

Presets: ``full`` (the public architecture, 12.3M parameters) and ``tiny`` (every channel count divided
by 8, 128-d output; random init, tests). Public weights are converted once by
``python -m splavu_ray.models.convert_i3d`` and then loaded from safetensors only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (name, input channels, [b0, b1 reduce, b1, b2 reduce, b2, b3 pool projection]) of the full network
_MIXED = {
    "mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}
FULL_WIDTH = 1024  # channels of Mixed_5c


@dataclass
class I3DConfig:
    """Architecture of an I3D encoder. ``width_divisor`` divides every channel count (1 = the public net)."""

    width_divisor: int = 1
    in_channels: int = 3
    image_size: int = 224
    num_frames: int = 16
    bn_eps: float = 1e-3
    model_type: str = "i3d"

    def __post_init__(self):
        if self.width_divisor not in (1, 2, 4, 8):
            raise ValueError(f"I3D width_divisor must be 1, 2, 4 or 8 (every channel count stays whole), "
                             f"got {self.width_divisor}")

    @property
    def hidden_size(self) -> int:
        return FULL_WIDTH // self.width_divisor

    def ch(self, n: int) -> int:
        return n // self.width_divisor

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden_size": self.hidden_size}

    @classmethod
    def from_dict(cls, d: dict) -> I3DConfig:
        if d.get("model_type", "i3d") != "i3d":
            raise ValueError(f"these weights are a {d.get('model_type')!r} model, not i3d")
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @classmethod
    def from_pretrained(cls, path: str, **_: object) -> I3DConfig:
        """The config stored with converted weights (same call shape as transformers' configs)."""
        from .weights_file import read_config

        return cls.from_dict(read_config(path))


PRESETS = {"full": I3DConfig(), "tiny": I3DConfig(width_divisor=8, image_size=64)}


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (front, back) of one axis."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    t, h, w = x.shape[-3:]
    pt, ph, pw = (_same_pad(s, k, st) for s, k, st in zip((t, h, w), kernel, stride))
    if not any(pt + ph + pw):
        return x
    return F.pad(x, (*pw, *ph, *pt))


class Unit3D(nn.Module):
    """Conv3d (no bias) -> BatchNorm3d -> ReLU with 'SAME' padding."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), eps: float = 1e-3):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=eps, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(_pad_same(x, self.kernel, self.stride))))


class MaxPoolSame(nn.Module):
    """Max pooling with 'SAME' zero padding (inputs are post-ReLU, so zeros never win over real values)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """An inflated Inception module: 1x1 | 1x1->3x3x3 | 1x1->3x3x3 | maxpool 3x3x3 -> 1x1, concatenated."""

    def __init__(self, cin: int, out: tuple[int, ...], eps: float):
        super().__init__()
        self.branch0 = Unit3D(cin, out[0], eps=eps)
        self.branch1_reduce = Unit3D(cin, out[1], eps=eps)
        self.branch1 = Unit3D(out[1], out[2], (3, 3, 3), eps=eps)
        self.branch2_reduce = Unit3D(cin, out[3], eps=eps)
        self.branch2 = Unit3D(out[3], out[4], (3, 3, 3), eps=eps)
        self.branch3_pool = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.branch3 = Unit3D(cin, out[5], eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(self.branch1_reduce(x)),
                          self.branch2(self.branch2_reduce(x)), self.branch3(self.branch3_pool(x))], dim=1)


class I3DEncoder(nn.Module):
    """I3D up to Mixed_5c; ``forward`` returns (B, T', d) tokens (Mixed_5c averaged over space)."""

    def __init__(self, config: I3DConfig):
        super().__init__()
        self.config = config
        c, eps = config.ch, config.bn_eps
        self.conv1a = Unit3D(config.in_channels, c(64), (7, 7, 7), (2, 2, 2), eps)
        self.pool2a = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.conv2b = Unit3D(c(64), c(64), eps=eps)
        self.conv2c = Unit3D(c(64), c(192), (3, 3, 3), eps=eps)
        self.pool3a = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.mixed_3b = Mixed(c(192), tuple(map(c, _MIXED["mixed_3b"][1])), eps)
        self.mixed_3c = Mixed(c(256), tuple(map(c, _MIXED["mixed_3c"][1])), eps)
        self.pool4a = MaxPoolSame((3, 3, 3), (2, 2, 2))
        for name in ("mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f"):
            cin, out = _MIXED[name]
            setattr(self, name, Mixed(c(cin), tuple(map(c, out)), eps))
        self.pool5a = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.mixed_5b = Mixed(c(832), tuple(map(c, _MIXED["mixed_5b"][1])), eps)
        self.mixed_5c = Mixed(c(832), tuple(map(c, _MIXED["mixed_5c"][1])), eps)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
        self.register_buffer("input_mean", mean, persistent=False)
        self.register_buffer("input_std", std, persistent=False)

    LAYERS = ("conv1a", "pool2a", "conv2b", "conv2c", "pool3a", "mixed_3b", "mixed_3c", "pool4a", "mixed_4b",
              "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f", "pool5a", "mixed_5b", "mixed_5c")

    def feature_map(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) ImageNet-normalised clips -> the Mixed_5c map (B, d, T', H', W')."""
        x = clips.transpose(1, 2)  # (B, 3, T, H, W)
        x = (x * self.input_std.to(x.dtype) + self.input_mean.to(x.dtype)) * 2 - 1  # [-1, 1] pixels
        for name in self.LAYERS:
            x = getattr(self, name)(x)
        return x

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.feature_map(clips).mean(dim=(3, 4)).transpose(1, 2)  # (B, T', d)
