"""Convert a public V-JEPA (v1) checkpoint (facebookresearch/jepa, e.g. ``vith16.pth.tar``) to safetensors.

    python -m splavu_ray.models.convert_vjepa1 vith16.pth.tar vjepa1-vith16/

The checkpoint holds the pre-training state: ``encoder``, ``predictor``, ``target_encoder`` (the EMA
encoder the paper evaluates; default here, as in the reference evaluation code), optimizer state, ...
It is read ONCE here with ``torch.load(weights_only=True)`` (tensors and plain containers only, no code
runs); run time only reads the safetensors written here. The ``module.`` (DistributedDataParallel) and
``backbone.`` (the masking wrapper) prefixes are removed; the remaining names are ours. The architecture
is read from the tensor shapes (width, depth, MLP width, patch and tubelet, position grid); the number of
heads is not visible in the weights, so it comes from ``--heads`` (16 for every released V-JEPA ViT-L/H).
Use the output with ``backbone.kind=vjepa1 backbone.source=OUT``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys

import torch

from .vjepa1 import VJEPA1Config, VJEPA1Encoder
from .weights_file import WeightsFileError, load_strict, write_weights

KEYS = ("target_encoder", "encoder")


class ConversionError(RuntimeError):
    pass


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {re.sub(r"^((module|backbone)\.)+", "", k): v for k, v in state.items()}


def infer_config(state: dict[str, torch.Tensor], heads: int, num_frames: int, image_size: int | None,
                 uniform_power: bool = True) -> VJEPA1Config:
    """The architecture of an encoder state dict (names already stripped)."""
    try:
        proj = state["patch_embed.proj.weight"]  # (d, C, tubelet, patch, patch)
        fc1 = state["blocks.0.mlp.fc1.weight"]  # (mlp, d)
    except KeyError as exc:
        raise ConversionError(f"no {exc.args[0]!r} in the encoder: not a V-JEPA video ViT") from None
    if proj.ndim != 5:
        raise ConversionError(f"patch_embed.proj.weight is {proj.ndim}-D; expected a 3-D (video) tubelet conv")
    d, cin, tubelet, patch = (int(n) for n in proj.shape[:4])
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    if image_size is None:  # read the side from the stored position grid, assuming num_frames frames
        pos = state.get("pos_embed")
        if pos is None:
            image_size = 224
        else:
            per_frame = pos.shape[-2] // max(1, num_frames // tubelet)
            image_size = round(math.sqrt(per_frame)) * patch
    cfg = VJEPA1Config(image_size=image_size, num_frames=num_frames, patch_size=patch, tubelet_size=tubelet,
                       in_channels=cin, hidden_size=d, depth=depth, num_heads=heads, mlp_ratio=fc1.shape[0] / d,
                       qkv_bias="blocks.0.attn.qkv.bias" in state, uniform_power=uniform_power)
    if cfg.mlp_hidden != fc1.shape[0]:
        raise ConversionError(f"MLP width {fc1.shape[0]} is not a whole ratio of width {d}")
    return cfg


def convert_checkpoint(ckpt: dict, key: str | None = None, heads: int = 16, num_frames: int = 16,
                       image_size: int | None = None) -> tuple[VJEPA1Config, dict[str, torch.Tensor], str]:
    """(config, our state dict, the checkpoint key used) from a loaded public checkpoint."""
    keys = (key,) if key else KEYS
    used = next((k for k in keys if isinstance(ckpt.get(k), dict)), None)
    if used is None:
        raise ConversionError(f"the checkpoint has none of the keys {list(keys)} (it has {sorted(ckpt)[:8]})")
    state = strip_prefixes(ckpt[used])
    cfg = infer_config(state, heads, num_frames, image_size)
    model = VJEPA1Encoder(cfg)
    if "pos_embed" not in state:  # fixed sin-cos: recompute it as the reference code initialises it
        state["pos_embed"] = model.pos_embed.clone()
    state = {k: v.float() for k, v in state.items()}
    load_strict(model, state, f"checkpoint[{used!r}]")
    return cfg, state, used


def convert(src: str, out: str, key: str | None = None, heads: int = 16, num_frames: int = 16,
            image_size: int | None = None) -> dict:
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConversionError(f"cannot read {src!r} as a tensors-only checkpoint: "
                              f"{type(exc).__name__}: {exc}") from None
    if not isinstance(ckpt, dict):
        raise ConversionError(f"{src!r} holds a {type(ckpt).__name__}, not a checkpoint dict")
    cfg, state, used = convert_checkpoint(ckpt, key, heads, num_frames, image_size)
    path = write_weights(state, cfg.to_dict(), out)
    return {"out": str(path), "key": used, "tensors": len(state), "hidden_size": cfg.hidden_size, "depth": cfg.depth,
            "heads": cfg.num_heads, "image_size": cfg.image_size, "num_frames": cfg.num_frames,
            "parameters": int(sum(v.numel() for k, v in state.items() if k != "pos_embed"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m splavu_ray.models.convert_vjepa1",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="public V-JEPA checkpoint, e.g. vith16.pth.tar")
    parser.add_argument("out", help="output folder (config.json + model.safetensors), or OUT.safetensors")
    parser.add_argument("--key", choices=KEYS, help="encoder to take (default: target_encoder, else encoder)")
    parser.add_argument("--heads", type=int, default=16, help="attention heads (16 for V-JEPA ViT-L/16 and ViT-H/16)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip the position grid was made for")
    parser.add_argument("--image-size", type=int, default=None, help="input side (default: read from pos_embed)")
    args = parser.parse_args(argv)
    try:
        report = convert(args.checkpoint, args.out, args.key, args.heads, args.frames, args.image_size)
    except (ConversionError, WeightsFileError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
