"""Convert the public pytorch-i3d RGB checkpoint to splavu_ray's safetensors I3D weights.

    python -m splavu_ray.models.convert_i3d rgb_imagenet.pt i3d_rgb_imagenet.safetensors

The input is the state dict of pytorch-i3d's ``InceptionI3d`` (``models/rgb_imagenet.pt``: ImageNet-inflated,
then trained on Kinetics-400; ``rgb_charades.pt`` converts the same way). It is read ONCE here with
``torch.load(weights_only=True)`` (tensors only, no code runs); run time only ever reads the safetensors
written here (a single file when OUT ends in .safetensors, else a folder with config.json +
model.safetensors). Names are mapped to ours (``Mixed_4b.b1a.conv3d.weight`` -> ``mixed_4b.branch1_reduce.
conv.weight``, ...); the Kinetics classifier (``logits.*``) and BatchNorm's ``num_batches_tracked`` are
dropped. Use it with ``backbone.kind=i3d backbone.source=OUT``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import torch

from .i3d import I3DConfig, I3DEncoder
from .weights_file import WeightsFileError, load_strict, write_weights

_TOP = {
    "Conv3d_1a_7x7": "conv1a", "Conv3d_2b_1x1": "conv2b", "Conv3d_2c_3x3": "conv2c",
    **{f"Mixed_{s}": f"mixed_{s}" for s in ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c")},
}
_BRANCH = {"b0": "branch0", "b1a": "branch1_reduce", "b1b": "branch1", "b2a": "branch2_reduce", "b2b": "branch2",
           "b3b": "branch3"}
_LEAF = {"conv3d": "conv", "bn": "bn"}
DROPPED_PREFIXES = ("logits.",)


class ConversionError(RuntimeError):
    pass


def public_to_ours(name: str) -> str | None:
    """Our parameter name for a pytorch-i3d state-dict key; None for keys we drop on purpose."""
    name = re.sub(r"^(module\.)+", "", name)
    if name.startswith(DROPPED_PREFIXES) or name.endswith("num_batches_tracked"):
        return None
    parts = name.split(".")
    if parts[0] not in _TOP:
        raise ConversionError(f"unknown pytorch-i3d key {name!r}")
    out = [_TOP[parts[0]]]
    rest = parts[1:]
    if parts[0].startswith("Mixed_"):
        if not rest or rest[0] not in _BRANCH:
            raise ConversionError(f"unknown pytorch-i3d key {name!r}")
        out.append(_BRANCH[rest[0]])
        rest = rest[1:]
    if len(rest) != 2 or rest[0] not in _LEAF:
        raise ConversionError(f"unknown pytorch-i3d key {name!r}")
    return ".".join(out + [_LEAF[rest[0]], rest[1]])


def convert_state_dict(public: dict[str, torch.Tensor]) -> tuple[I3DConfig, dict[str, torch.Tensor], list[str]]:
    """(config, our state dict, dropped keys) from a pytorch-i3d state dict."""
    if "state_dict" in public and isinstance(public["state_dict"], dict):
        public = public["state_dict"]
    ours, dropped = {}, []
    for key, value in public.items():
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"{key!r} is not a tensor ({type(value).__name__}): not a pytorch-i3d state dict")
        new = public_to_ours(key)
        if new is None:
            dropped.append(key)
        else:
            ours[new] = value.float() if value.is_floating_point() else value
    stem = ours.get("conv1a.conv.weight")
    if stem is None:
        raise ConversionError("no Conv3d_1a_7x7.conv3d.weight: not a pytorch-i3d InceptionI3d checkpoint")
    if 64 % stem.shape[0]:
        raise ConversionError(f"Conv3d_1a_7x7 has {stem.shape[0]} channels; expected 64 (or 64 / 2, 4, 8)")
    config = I3DConfig(width_divisor=64 // stem.shape[0], in_channels=int(stem.shape[1]))
    load_strict(I3DEncoder(config), ours, "the converted checkpoint")  # every weight present, every shape right
    return config, ours, dropped


def convert(src: str, out: str) -> dict:
    try:
        public = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConversionError(f"cannot read {src!r} as a tensors-only checkpoint: "
                              f"{type(exc).__name__}: {exc}") from None
    if not isinstance(public, dict):
        raise ConversionError(f"{src!r} holds a {type(public).__name__}, not a state dict")
    config, state, dropped = convert_state_dict(public)
    path = write_weights(state, config.to_dict(), out)
    params = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var")))
    return {"out": str(path), "tensors": len(state), "parameters": int(params), "hidden_size": config.hidden_size,
            "dropped": sorted(dropped)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m splavu_ray.models.convert_i3d",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="pytorch-i3d state dict, e.g. models/rgb_imagenet.pt")
    parser.add_argument("out", help="OUT.safetensors (one file) or a folder (config.json + model.safetensors)")
    args = parser.parse_args(argv)
    try:
        report = convert(args.checkpoint, args.out)
    except (ConversionError, WeightsFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({**report, "dropped": len(report["dropped"])}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
