"""f_P, the learned pixel anonymizer (the SPAct / TeD-SPAD family): frames in, frames of the same shape out.

A small U-Net on single RGB frames in [0, 1], (N, 3, H, W). Its output is ``sigmoid(logit(x) + U(x))``: it
stays in [0, 1] whatever the net says, and the last convolution of ``U`` starts at zero, so f_P is the
identity at step 0 (up to the clamp of x to [1e-4, 1 - 1e-4] that keeps the logit finite). The net is
fully convolutional: it runs at any frame size (training crops and evaluation crops share the side S of the
backbone's input).

f_P trains like f_A, with the same terms (splavu_ray.training.steps), but it sees frames: the anonymized
features are f_E(f_P(x)) with the gradient flowing through the frozen encoder into f_P
(:meth:`splavu_ray.models.backbone.FrozenBackbone.forward_with_input_grad`), the raw ones f_E(x).
:class:`PixelFeatureBranch` is f_P with the encoder attached: it stands where f_A stands in
:class:`splavu_ray.training.model.SplavuModel` (frames in, anonymized features out), with the same weight
names as f_P, so its state is f_P's. The encoder is held, not registered: it never enters the optimizer,
DeepSpeed, a checkpoint or an export.

Exports are ``pixel_anonymizer.safetensors`` + ``pixel_anonymizer.json`` (never a pickle)::

    fp = load_pixel_anonymizer("outputs/pixel_unet/best_pixel_anonymizer")
    frames01 = fp(frames01)                  # (N, 3, H, W) in [0, 1]
    x = anonymize_normalized(fp, x)          # (..., 3, S, S) ImageNet-normalised, as the backbone takes them
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..data.pixel_ops import ANONYMIZER_CONFIG, ANONYMIZER_WEIGHTS
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

FORMAT = "splavu_ray.pixel_anonymizer/1"
_EPS = 1e-4


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(1, cout), nn.GELU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GELU())


class PixelAnonymizer(nn.Module):
    """U-Net f_P: ``depth`` poolings by 2, ``width`` channels at full resolution (doubled per level),
    skip connections, a zero-initialised 1x1 head added to the input's logit."""

    def __init__(self, width: int = 16, depth: int = 2):
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"pixel anonymizer needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        self.width, self.depth = width, depth
        chans = [width * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(3, chans[0])] + [_block(chans[i], chans[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([_block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], 3, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def hparams(self) -> dict:
        return {"kind": "pixel_unet", "width": self.width, "depth": self.depth}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.anonymize(x)

    def anonymize(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> the same shape, in (0, 1) (f_P's own forward; a subclass keeps it)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"pixel anonymizer expects (N, 3, H, W) frames, got {tuple(x.shape)}")
        skips, h = [], self.down[0](x)
        for block in self.down[1:]:
            skips.append(h)
            h = block(nn.functional.avg_pool2d(h, 2, ceil_mode=True))
        for block in self.up:
            skip = skips.pop()
            h = nn.functional.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], dim=1))
        return torch.sigmoid(torch.logit(x.clamp(_EPS, 1 - _EPS)) + self.head(h))


def _mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return mean, std


def anonymize_normalized(fp: PixelAnonymizer, x: torch.Tensor) -> torch.Tensor:
    """f_P on ImageNet-normalised frames (..., 3, S, S) (what splavu_ray.data.transforms gives the backbone):
    back to [0, 1], f_P frame by frame, normalised again. Same shape and dtype out."""
    mean, std = _mean_std(x)
    lead = x.shape[:-3]
    y = fp.anonymize((x * std + mean).reshape(-1, *x.shape[-3:]).to(next(fp.parameters()).dtype))
    return ((y.to(x.dtype) - mean) / std).reshape(*lead, *x.shape[-3:])


class PixelFeatureBranch(PixelAnonymizer):
    """f_P with the frozen encoder attached: frames -> anonymized features f_E(f_P(x)), gradients into f_P.

    Takes ImageNet-normalised clips (B, L, T, 3, S, S) -> (B, L, d), or static frames (B, K, 3, S, S) ->
    (B, K, d) (each frame anonymized once, then tiled over ``clip_len`` frames, as the feature store builds
    static clips). ``dim`` is the encoder's width (the heads' input)."""

    def __init__(self, backbone, clip_len: int, width: int = 16, depth: int = 2):
        super().__init__(width, depth)
        self.__dict__["_backbone"] = backbone  # held, not registered (no parameters, no state_dict entries)
        self.dim, self.clip_len = int(backbone.embed_dim), clip_len

    no_grad_chunk = 16  # clips per pass without autograd (validation): f_P's full-resolution maps stay small

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() and len(x) > self.no_grad_chunk:
            return torch.cat([self._features(x[i:i + self.no_grad_chunk]) for i in range(0, len(x), self.no_grad_chunk)])
        return self._features(x)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        bb = self.__dict__["_backbone"]
        if x.ndim == 6:  # clips
            b, n = x.shape[:2]
            y = anonymize_normalized(self, x.reshape(b * n, *x.shape[2:]))
        elif x.ndim == 5:  # static frames
            b, n = x.shape[:2]
            y = anonymize_normalized(self, x.reshape(b * n, *x.shape[2:]))
            y = y.unsqueeze(1).expand(-1, self.clip_len, -1, -1, -1)
        else:
            raise ValueError(f"pixel branch takes clips (B, L, T, 3, S, S) or static frames (B, K, 3, S, S), "
                             f"got {tuple(x.shape)}")
        return bb.forward_with_input_grad(y).reshape(b, n, -1)


def pixel_anonymizer_from_config(cfg) -> PixelAnonymizer:
    """f_P from a PixelUNetConfig (splavu_ray.config, ``pixel_unet``)."""
    return PixelAnonymizer(cfg.width, cfg.depth)


def save_pixel_anonymizer(fp: PixelAnonymizer, folder: str | Path, metadata: dict | None = None) -> Path:
    """Export f_P: float32 weights (safetensors) + JSON config (the branch's state is f_P's)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in fp.state_dict().items()}
    save_file(state, str(folder / ANONYMIZER_WEIGHTS))
    info = {"format": FORMAT, **fp.hparams, "metadata": metadata or {}, "parameters": fp.num_parameters()}
    (folder / ANONYMIZER_CONFIG).write_text(json.dumps(info, indent=2))
    return folder


class PixelAnonymizerLoadError(ValueError):
    pass


def load_pixel_anonymizer(path: str | Path, device: str | torch.device = "cpu") -> PixelAnonymizer:
    """Load an exported f_P (its folder, or either of its files), in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    folder = path.parent if path.is_file() else path
    cfg_path, w_path = folder / ANONYMIZER_CONFIG, folder / ANONYMIZER_WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise PixelAnonymizerLoadError(f"{folder} is not a pixel anonymizer export: expected {ANONYMIZER_CONFIG} "
                                       f"and {ANONYMIZER_WEIGHTS} (e.g. outputs/pixel_unet/best_pixel_anonymizer)")
    try:
        info = json.loads(cfg_path.read_text())
        if info.get("format") != FORMAT:
            raise KeyError(f"format {info.get('format')!r}, expected {FORMAT!r}")
        fp = PixelAnonymizer(int(info["width"]), int(info["depth"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PixelAnonymizerLoadError(f"{cfg_path} is not a valid pixel anonymizer config: {exc}") from None
    try:
        fp.load_state_dict(load_file(str(w_path)), strict=True)
    except (SafetensorError, OSError) as exc:
        raise PixelAnonymizerLoadError(f"{w_path} is not a readable safetensors file: {exc}") from None
    except RuntimeError as exc:
        raise PixelAnonymizerLoadError(f"{w_path} does not match its config {fp.hparams}: {exc}") from None
    return fp.to(device).eval()
