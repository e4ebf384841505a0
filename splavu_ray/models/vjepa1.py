"""V-JEPA (v1) video encoder: the ViT of Bardes et al., "Revisiting Feature Prediction for Learning Visual
Representations from Video" (2024), as its reference code (facebookresearch/jepa) builds it for evaluation.

Architecture (parameter names follow the public checkpoints once their ``module.`` / ``backbone.``
prefixes are removed, so converted weights load one to one):
- ``patch_embed.proj``: Conv3d with kernel = stride = (tubelet, patch, patch) = (2, 16, 16);
- ``pos_embed``: fixed 3-D sin-cos position embedding (1, N, d) stored in the checkpoint (for random
  init we compute it as the reference does, "uniform power": equal sin-cos widths for t, h and w);
  for another clip length or side it is resized trilinearly, as the reference does;
- ``blocks.i``: pre-norm blocks, x + proj(MHSA(norm1(x))) with a fused ``attn.qkv`` (bias), then
  x + mlp.fc2(GELU(mlp.fc1(norm2(x)))); LayerNorm eps 1e-6;
- ``norm``: the final LayerNorm. No class token; every patch token is an output token.

Shapes (``VJEPA1Encoder``): clips (B, T, 3, H, W), ImageNet-normalised -> tokens (B, N, d) with
N = (T/2) * (H/16) * (W/16): (B, 1568, 1280) for the ViT-H/16 preset at 16 x 224 x 224.
Presets: ``vith16`` (the paper's V-JEPA-H: depth 32, width 1280, 16 heads, MLP 5120; 631.6M parameters
without the fixed position embedding), ``vitl16`` (depth 24, width 1024) and ``tiny`` (tests).
Public weights are converted once by ``python -m splavu_ray.models.convert_vjepa1``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class VJEPA1Config:
    image_size: int = 224
    num_frames: int = 16
    patch_size: int = 16
    tubelet_size: int = 2
    in_channels: int = 3
    hidden_size: int = 1280
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    uniform_power: bool = True
    layer_norm_eps: float = 1e-6
    model_type: str = "vjepa1"

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"V-JEPA width {self.hidden_size} is not divisible by {self.num_heads} heads")
        if self.image_size % self.patch_size or self.num_frames % self.tubelet_size:
            raise ValueError(f"V-JEPA input {self.num_frames}x{self.image_size} is not a whole number of "
                             f"{self.tubelet_size}x{self.patch_size}x{self.patch_size} tubelets")

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.num_frames // self.tubelet_size, self.image_size // self.patch_size,
                self.image_size // self.patch_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VJEPA1Config:
        if d.get("model_type", "vjepa1") != "vjepa1":
            raise ValueError(f"these weights are a {d.get('model_type')!r} model, not vjepa1")
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @classmethod
    def from_pretrained(cls, path: str, **_: object) -> VJEPA1Config:
        from .weights_file import read_config

        return cls.from_dict(read_config(path))


PRESETS = {
    "vith16": VJEPA1Config(),
    "vitl16": VJEPA1Config(hidden_size=1024, depth=24, num_heads=16),
    "tiny": VJEPA1Config(image_size=64, hidden_size=96, depth=2, num_heads=4),
}


def preset(name: str, **overrides) -> VJEPA1Config:
    if name not in PRESETS:
        raise ValueError(f"unknown V-JEPA preset {name!r}; allowed: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def _sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = pos.reshape(-1, 1).double() * omega
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_pos_embed(dim: int, grid: tuple[int, int, int], uniform_power: bool = True) -> torch.Tensor:
    """(1, T*H*W, dim) 3-D sin-cos embedding, t-major token order, [t | h | w] feature blocks."""
    t, h, w = grid
    gd, gh, gw = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    if uniform_power:
        dd = dh = dw = int(math.ceil(dim / 6) * 2)
    else:
        dh = dw = dim // 4
        dd = dim // 2
    emb = torch.cat([_sincos_1d(dd, gd), _sincos_1d(dh, gh), _sincos_1d(dw, gw)], dim=1)[:, :dim]
    return emb.float().unsqueeze(0)


class PatchEmbed3D(nn.Module):
    def __init__(self, cfg: VJEPA1Config):
        super().__init__()
        k = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(cfg.in_channels, cfg.hidden_size, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> (B, N, d)
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, cfg: VJEPA1Config):
        super().__init__()
        self.heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head dim)) v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MLP(nn.Module):
    def __init__(self, cfg: VJEPA1Config):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.mlp_hidden)
        self.fc2 = nn.Linear(cfg.mlp_hidden, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: VJEPA1Config):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VJEPA1Encoder(nn.Module):
    """The V-JEPA v1 ViT encoder; ``forward`` maps (B, T, 3, H, W) clips to (B, N, d) tokens."""

    def __init__(self, config: VJEPA1Config):
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed3D(config)
        # Fixed (never trained) but part of the checkpoint: a persistent buffer, not a parameter.
        self.register_buffer("pos_embed", sincos_pos_embed(config.hidden_size, config.grid, config.uniform_power))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if any(p.is_meta for p in self.parameters()):
            return
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv3d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for i, blk in enumerate(self.blocks):  # the reference rescales residual outputs by depth
            blk.attn.proj.weight.data.div_(math.sqrt(2.0 * (i + 1)))
            blk.mlp.fc2.weight.data.div_(math.sqrt(2.0 * (i + 1)))

    def _pos_embed(self, t: int, h: int, w: int) -> torch.Tensor:
        grid = self.config.grid
        if (t, h, w) == grid:
            return self.pos_embed
        d = self.pos_embed.shape[-1]
        pe = self.pos_embed.reshape(1, *grid, d).permute(0, 4, 1, 2, 3)
        pe = F.interpolate(pe.float(), size=(t, h, w), mode="trilinear", align_corners=False)
        return pe.permute(0, 2, 3, 4, 1).reshape(1, t * h * w, d).to(self.pos_embed.dtype)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.transpose(1, 2)  # (B, 3, T, H, W)
        cfg = self.config
        t, h, w = x.shape[2] // cfg.tubelet_size, x.shape[3] // cfg.patch_size, x.shape[4] // cfg.patch_size
        x = self.patch_embed(x) + self._pos_embed(t, h, w)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)
