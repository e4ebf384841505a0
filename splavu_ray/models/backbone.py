"""Frozen video backbones (f_E) behind one small interface.

Contract: ``clips`` is a float tensor (B, T, C, H, W) already normalised (ImageNet mean/std) -- the
layout of transformers' VJEPA2Model / VideoMAEModel. Output: per-clip vectors (B, d) from ``forward``
(mean or attentive pooling) or tokens (B, N, d) from ``tokens``. ``embed_dim`` is d. The model is
always in eval mode and never receives gradients.

Kinds: ``vjepa2`` and ``videomae`` (transformers models), ``i3d`` (models/i3d.py: N = T/8 tokens of
1024-d, Mixed_5c averaged over space) and ``vjepa1`` (models/vjepa1.py: the V-JEPA v1 ViT, N = T/2 *
(H/16)^2 patch tokens). The last two are our own modules; their weights come from the converters
(models/convert_i3d.py, models/convert_vjepa1.py) as safetensors files or folders.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..config import PACKAGE_DIR, BackboneConfig
from ..data.remote_cache import RemoteFolderError, is_remote_folder, listing, local_copy

DEFAULT_VJEPA2 = "facebook/vjepa2-vith-fpc64-256"
DEFAULT_VIDEOMAE = "MCG-NJU/videomae-base"
BUILTIN_DIR = PACKAGE_DIR / "assets"
BUILTIN_PREFIX = "builtin:"
RANDOM_PREFIX = "random:"
POOLER_FILE = "pooler.safetensors"  # attentive pooler shipped beside an encoder checkpoint
LOCAL_KINDS = ("i3d", "vjepa1")  # our own modules, weights only from converted safetensors
CONVERTERS = {"i3d": "python -m splavu_ray.models.convert_i3d rgb_imagenet.pt OUT.safetensors",
              "vjepa1": "python -m splavu_ray.models.convert_vjepa1 vith16.pth.tar OUT_DIR"}


class BackboneError(RuntimeError):
    """A backbone cannot be loaded; the message says how to provide the weights."""


def tiny_vjepa2_config(image_size: int = 64, num_frames: int = 16):
    """A V-JEPA 2 small enough to run on CPU in milliseconds (tests, the built-in demo)."""
    from transformers import VJEPA2Config

    return VJEPA2Config(
        crop_size=image_size, frames_per_clip=num_frames, patch_size=16, tubelet_size=2,
        hidden_size=192, num_attention_heads=4, num_hidden_layers=4, mlp_ratio=4.0,
        pred_hidden_size=64, pred_num_attention_heads=2, pred_num_hidden_layers=1,
        num_pooler_layers=1,
    )


def tiny_videomae_config(image_size: int = 64, num_frames: int = 16):
    from transformers import VideoMAEConfig

    return VideoMAEConfig(
        image_size=image_size, num_frames=num_frames, patch_size=16, tubelet_size=2,
        hidden_size=192, num_attention_heads=4, num_hidden_layers=4, intermediate_size=768,
        use_mean_pooling=False,
    )


def tiny_config(kind: str, image_size: int = 64, num_frames: int = 16):
    """The config of ``random:tiny`` for any backbone kind (no weights are built)."""
    if kind == "i3d":
        from .i3d import PRESETS

        return replace(PRESETS["tiny"], image_size=image_size, num_frames=num_frames)
    if kind == "vjepa1":
        from .vjepa1 import preset

        return preset("tiny", image_size=image_size, num_frames=num_frames)
    return (tiny_vjepa2_config if kind == "vjepa2" else tiny_videomae_config)(image_size, num_frames)


def model_classes(kind: str):
    if kind == "i3d":
        from .i3d import I3DConfig, I3DEncoder

        return I3DConfig, I3DEncoder
    if kind == "vjepa1":
        from .vjepa1 import VJEPA1Config, VJEPA1Encoder

        return VJEPA1Config, VJEPA1Encoder
    if kind == "vjepa2":
        from transformers import VJEPA2Config, VJEPA2Model

        return VJEPA2Config, VJEPA2Model
    from transformers import VideoMAEConfig, VideoMAEModel

    return VideoMAEConfig, VideoMAEModel


def _offline_help(source: str, kind: str) -> str:
    return (
        f"could not load {kind} weights from {source!r}. This machine may have no access to the model hub. "
        f"Download them where the hub is reachable (`hf download {source} --local-dir DIR`, or "
        f"`huggingface-cli download ...`), copy DIR to the cluster (shared storage or the image), and set "
        f"backbone.source=DIR; or point HF_HOME at a cache that already holds {source!r}."
    )


def resolve_source(source: str, fetch: bool = True) -> str:
    """Map 'builtin:NAME' to the packaged folder and an s3:// / gs:// folder to its local copy on this node
    (downloaded once, splavu_ray.data.remote_cache; ``fetch=False`` only checks that it holds files);
    other sources pass through."""
    if is_remote_folder(source):
        try:
            return local_copy(source) if fetch else (listing(source) and source)
        except RemoteFolderError as exc:
            raise BackboneError(f"backbone.source: {exc}") from None
    if source.startswith(BUILTIN_PREFIX):
        name = source[len(BUILTIN_PREFIX):]
        folder = BUILTIN_DIR / name
        if not (folder / "config.json").is_file():
            raise BackboneError(
                f"the built-in backbone {name!r} is not in {folder}. Create it with "
                f"`python -m splavu_ray.pretrain_backbone` (see docs/benchmarks.md)."
            )
        return str(folder)
    return source


def check_local_weights(kind: str, source: str) -> None:
    """Fail early when an I3D / V-JEPA v1 source is a local path that does not exist (no weights are read)."""
    if kind not in LOCAL_KINDS or source.startswith((RANDOM_PREFIX, BUILTIN_PREFIX)) or "://" in source:
        return
    if not os.path.exists(os.path.expanduser(source)):
        raise BackboneError(f"backbone.kind={kind} loads converted weights from a local .safetensors file or "
                            f"folder; {source!r} does not exist. Convert the public checkpoint once with "
                            f"`{CONVERTERS[kind]}` and set backbone.source=OUT (docs/method.md, 'Backbones and "
                            f"their weights')")


def _load_local(kind: str, source: str) -> nn.Module:
    """An I3D / V-JEPA v1 encoder from converted safetensors (a .safetensors file or a folder)."""
    from .weights_file import WeightsFileError, load_strict, read_weights

    config_cls, model_cls = model_classes(kind)
    check_local_weights(kind, source)
    path = os.path.expanduser(resolve_source(source))
    try:
        stored, state = read_weights(path)
        config = config_cls.from_dict(stored)
    except (WeightsFileError, ValueError, TypeError) as exc:
        raise BackboneError(f"cannot load {kind} weights from {path!r}: {exc}") from None
    # Like a hub model, the input side is the stored one; other clip lengths work (V-JEPA resizes its
    # position grid as the reference code does, I3D is convolutional).
    model = model_cls(config)
    try:
        load_strict(model, state, f"{path!r}")
    except WeightsFileError as exc:
        raise BackboneError(str(exc)) from None
    return model


def load_encoder(kind: str, source: str, image_size: int | None = None, num_frames: int = 16) -> nn.Module:
    """The encoder model, on CPU, fp32. Never unpickles (safetensors only)."""
    if kind in LOCAL_KINDS:
        if source.startswith(RANDOM_PREFIX):
            preset = source[len(RANDOM_PREFIX):]
            if preset != "tiny":
                raise BackboneError(f"unknown random preset {preset!r}; allowed: 'random:tiny'")
            with torch.random.fork_rng():  # same weights in every process (Ray actors, workers)
                torch.manual_seed(0)
                return model_classes(kind)[1](tiny_config(kind, image_size or 64, num_frames))
        return _load_local(kind, source)
    config_cls, model_cls = model_classes(kind)
    if source.startswith(RANDOM_PREFIX):
        preset = source[len(RANDOM_PREFIX):]
        if preset != "tiny":
            raise BackboneError(f"unknown random preset {preset!r}; allowed: 'random:tiny'")
        cfg = (tiny_vjepa2_config if kind == "vjepa2" else tiny_videomae_config)(image_size or 64, num_frames)
        with torch.random.fork_rng():  # same weights in every process (Ray actors, workers)
            torch.manual_seed(0)
            return model_cls(cfg)
    path = os.path.expanduser(resolve_source(source))
    local = os.path.isdir(path)
    # Hub ids look like 'org/name'; anything else path-like must be an existing folder.
    if not local and (path.startswith((".", "/")) or path.count("/") > 1):
        raise BackboneError(f"backbone folder {path!r} does not exist")
    try:
        model = model_cls.from_pretrained(path, use_safetensors=True, local_files_only=local)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise BackboneError(_offline_help(path, kind) + f" (cause: {type(exc).__name__}: {exc})") from None
    return model


class AttentivePooler(nn.Module):
    """V-JEPA's attentive probe pooler (query token cross-attending over tokens)."""

    def __init__(self, encoder_config):
        super().__init__()
        from transformers.models.vjepa2.modeling_vjepa2 import VJEPA2AttentivePooler

        self.inner = VJEPA2AttentivePooler(encoder_config)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.inner(tokens)


def _load_pooler(encoder, kind: str, source: str, pooler_path: str | None) -> AttentivePooler:
    if kind != "vjepa2":
        raise BackboneError("attentive pooling is available for V-JEPA 2 backbones only; use pooling=mean")
    from safetensors.torch import load_file

    pooler = AttentivePooler(encoder.config)
    candidates = [pooler_path] if pooler_path else []
    src = resolve_source(source)
    if os.path.isdir(src):
        candidates += [os.path.join(src, POOLER_FILE), os.path.join(src, "model.safetensors")]
    for path in candidates:
        if path and os.path.isfile(path):
            state = load_file(path)
            state = {k.split("pooler.", 1)[1]: v for k, v in state.items() if "pooler." in k} or state
            missing, unexpected = pooler.inner.load_state_dict(state, strict=False)
            if not missing:
                return pooler
            if pooler_path and path == pooler_path:
                raise BackboneError(f"pooler weights {path!r} lack keys {missing[:4]}...")
    raise BackboneError(
        "pooling=attentive needs trained pooler weights: set backbone.pooler_path to a safetensors file "
        "of a V-JEPA 2 attentive probe (keys 'pooler.*'), or use a VJEPA2ForVideoClassification checkpoint"
    )


class FrozenBackbone(nn.Module):
    """f_E: frozen encoder + pooling. Eval mode forever, no gradients."""

    def __init__(self, encoder: nn.Module, kind: str, pooling: Literal["mean", "attentive"] = "mean",
                 pooler: nn.Module | None = None, dtype: torch.dtype = torch.float32, name: str = ""):
        super().__init__()
        self.encoder = encoder
        self.kind = kind
        self.pooling = pooling
        self.pooler = pooler
        self.name = name
        self.compute_dtype = dtype
        cfg = encoder.config
        self.embed_dim: int = cfg.hidden_size
        self.num_frames: int = getattr(cfg, "frames_per_clip", None) or getattr(cfg, "num_frames", 16)
        self.image_size: int = getattr(cfg, "crop_size", None) or getattr(cfg, "image_size", 224)
        self.requires_grad_(False)
        self.to(dtype)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenBackbone":
        # Frozen: ignore requests to switch to training mode (dropout, drop-path stay off).
        return super().train(False)

    def _check(self, clips: torch.Tensor) -> None:
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"clips must be (B, T, 3, H, W) float tensors, got shape {tuple(clips.shape)}")

    @torch.no_grad()
    def tokens(self, clips: torch.Tensor) -> torch.Tensor:
        return self._tokens(clips)

    def _tokens(self, clips: torch.Tensor) -> torch.Tensor:
        self._check(clips)
        x = clips.to(self.compute_dtype)
        if self.kind in LOCAL_KINDS:
            return self.encoder(x)
        if self.kind == "vjepa2":
            out = self.encoder(pixel_values_videos=x, skip_predictor=True)
        else:
            out = self.encoder(pixel_values=x)
        return out.last_hidden_state

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_with_input_grad(clips)

    def forward_with_input_grad(self, clips: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with autograd on: the encoder's weights stay frozen (requires_grad False, eval
        mode), but the gradient reaches ``clips`` (what trains a pixel anonymizer in front of the encoder)."""
        tok = self._tokens(clips)
        pooled = self.pooler(tok) if self.pooling == "attentive" else tok.mean(dim=1)
        return pooled.float()


def pick_dtype(option: str, device: torch.device | str = "cpu") -> torch.dtype:
    if option == "bfloat16":
        return torch.bfloat16
    if option == "float32":
        return torch.float32
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def build_backbone(cfg: BackboneConfig, device: torch.device | str = "cpu", num_frames: int = 16) -> FrozenBackbone:
    """Load the frozen backbone described by ``cfg`` onto ``device``."""
    encoder = load_encoder(cfg.kind, cfg.source, cfg.image_size, num_frames)
    pooler = _load_pooler(encoder, cfg.kind, cfg.source, cfg.pooler_path) if cfg.pooling == "attentive" else None
    dtype = pick_dtype(cfg.dtype, device)
    return FrozenBackbone(encoder, cfg.kind, cfg.pooling, pooler, dtype, name=cfg.source).to(device)


def describe(backbone: FrozenBackbone) -> dict:
    return {
        "name": backbone.name, "kind": backbone.kind, "pooling": backbone.pooling,
        "embed_dim": backbone.embed_dim, "num_frames": backbone.num_frames, "image_size": backbone.image_size,
        "parameters": sum(p.numel() for p in backbone.parameters()),
    }


def save_encoder(encoder: nn.Module, folder: str | Path, extra: dict | None = None) -> Path:
    """Save an encoder as safetensors + config.json (the layout from_pretrained reads)."""
    folder = Path(folder)
    if hasattr(encoder, "save_pretrained"):
        encoder.save_pretrained(folder, safe_serialization=True)
    else:  # our own modules (I3D, V-JEPA v1): config.json + model.safetensors
        from .weights_file import write_weights

        write_weights(encoder.state_dict(), encoder.config.to_dict(), folder)
    if extra:
        (folder / "splavu_backbone.json").write_text(json.dumps(extra, indent=2))
    return folder
