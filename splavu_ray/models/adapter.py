"""f_A, the Anonymizing Adapter Module: features in, features of the same shape out.

Input (B, L, d): the sequence of one video's clip features (L >= 1), or (B, d) for single clips.
Attention runs along L inside each sample only (batch_first MultiheadAttention), never across the
batch. Every residual branch ends in a zero-initialised projection, so f_A is exactly the identity
at step 0 (docs/method.md: allowed in place of a reconstruction warm-up).

Exports are topology-free: ``adapter.safetensors`` + ``adapter.json``. Loading never unpickles::

    z = splavu_ray.load_adapter("outputs/run/adapter")(features)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from torch import nn

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
Kind = Literal["transformer", "attention", "mlp"]


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class AdapterBlock(nn.Module):
    """Pre-norm residual block: x + Attn(LN(x)) [+ FF(LN(x))]."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, feed_forward: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)
        self.norm2 = nn.LayerNorm(dim) if feed_forward else None
        self.ff = _FeedForward(dim, int(dim * mlp_ratio), dropout) if feed_forward else None

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, key_padding_mask=padding_mask, need_weights=False)[0]
        if self.ff is not None:
            x = x + self.ff(self.norm2(x))
        return x


class MLPBlock(nn.Module):
    """Per-clip residual MLP (no temporal mixing): the ablation variant."""

    def __init__(self, dim: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ff = _FeedForward(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.ff(self.norm(x))


class AnonymizingAdapter(nn.Module):
    def __init__(self, dim: int, kind: Kind = "transformer", layers: int = 3, heads: int = 8,
                 mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        if kind not in ("transformer", "attention", "mlp"):
            raise ValueError(f"adapter kind must be transformer, attention or mlp, got {kind!r}")
        if kind != "mlp" and dim % heads:
            raise ValueError(f"adapter width {dim} is not divisible by heads={heads}")
        self.hparams = dict(dim=dim, kind=kind, layers=layers, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout)
        if kind == "mlp":
            blocks = [MLPBlock(dim, mlp_ratio, dropout) for _ in range(layers)]
        else:
            blocks = [AdapterBlock(dim, heads, mlp_ratio, dropout, kind == "transformer") for _ in range(layers)]
        self.blocks = nn.ModuleList(blocks)

    @property
    def dim(self) -> int:
        return self.hparams["dim"]

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, d) or (B, d); padding_mask: (B, L) True where a position is padding."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"adapter expects features of width {self.dim}, got {x.shape[-1]}")
        squeeze = x.ndim == 2
        if squeeze:
            x = x.unsqueeze(1)
        for block in self.blocks:
            x = block(x, padding_mask)
        return x.squeeze(1) if squeeze else x

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def adapter_from_config(dim: int, cfg) -> AnonymizingAdapter:
    """Build from an AdapterConfig (splavu_ray.config)."""
    return AnonymizingAdapter(dim, cfg.kind, cfg.layers, cfg.heads, cfg.mlp_ratio, cfg.dropout)


def save_adapter(adapter: AnonymizingAdapter, folder: str | Path, metadata: dict | None = None) -> Path:
    """Consolidated export: weights (safetensors) + JSON config; no DeepSpeed/Ray needed to load."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in adapter.state_dict().items()}
    save_file(state, str(folder / ADAPTER_WEIGHTS))
    info = {"format": "splavu_ray.adapter/1", **adapter.hparams, "metadata": metadata or {},
            "parameters": adapter.num_parameters()}
    (folder / ADAPTER_CONFIG).write_text(json.dumps(info, indent=2))
    return folder


class AdapterLoadError(ValueError):
    pass


def load_adapter(path: str | Path, device: str | torch.device = "cpu") -> AnonymizingAdapter:
    """Load an exported adapter (folder, or its adapter.json / adapter.safetensors), in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    folder = path.parent if path.is_file() else path
    cfg_path, w_path = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise AdapterLoadError(f"{folder} is not an adapter export: expected {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    try:
        info = json.loads(cfg_path.read_text())
        hp = {k: info[k] for k in ("dim", "kind", "layers", "heads", "mlp_ratio", "dropout")}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise AdapterLoadError(f"{cfg_path} is not a valid adapter config: {exc}") from None
    adapter = AnonymizingAdapter(**hp)
    try:
        state = load_file(str(w_path))
    except (SafetensorError, OSError) as exc:
        raise AdapterLoadError(f"{w_path} is not a readable safetensors file: {exc}") from None
    try:
        adapter.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise AdapterLoadError(f"{w_path} does not match its config {hp}: {exc}") from None
    return adapter.to(device).eval()
