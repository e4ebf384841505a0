"""Self-describing safetensors weights for the backbones we implement ourselves (I3D, V-JEPA v1).

A converted checkpoint is either
- one ``.safetensors`` file whose header metadata holds the architecture under ``splavu_config`` (JSON), or
- a folder with ``config.json`` (the architecture, plus ``hidden_size`` so tools can read the width) and
  ``model.safetensors``.
Both are read with safetensors only: nothing is ever unpickled at run time.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CONFIG_KEY = "splavu_config"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class WeightsFileError(RuntimeError):
    """A weights file or folder is missing, unreadable or not of the expected architecture."""


def write_weights(state: dict[str, torch.Tensor], config: dict, out: str | Path) -> Path:
    """Write ``state`` + ``config`` to ``out``: a single file when it ends in .safetensors, else a folder."""
    from safetensors.torch import save_file

    out = Path(out).expanduser()
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    if out.suffix == ".safetensors":
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(out), metadata={CONFIG_KEY: json.dumps(config, sort_keys=True)})
        return out
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS_NAME), metadata={CONFIG_KEY: json.dumps(config, sort_keys=True)})
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def _weights_path(path: Path) -> Path:
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise WeightsFileError(f"{path} has no {WEIGHTS_NAME}")
        return weights
    if path.is_file():
        if path.suffix != ".safetensors":
            raise WeightsFileError(f"{path} is not a .safetensors file (convert the public checkpoint first; "
                                   "pickled checkpoints are never loaded at run time)")
        return path
    raise WeightsFileError(f"weights {str(path)!r} do not exist")


def read_config(path: str | Path) -> dict:
    """The architecture stored with converted weights (no tensor is read)."""
    path = Path(path).expanduser()
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        try:
            return json.loads((path / CONFIG_NAME).read_text())
        except ValueError as exc:
            raise WeightsFileError(f"{path / CONFIG_NAME} is not valid JSON: {exc}") from None
    from safetensors import safe_open

    weights = _weights_path(path)
    try:
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise WeightsFileError(f"cannot read {weights}: {type(exc).__name__}: {exc}") from None
    if CONFIG_KEY not in meta:
        raise WeightsFileError(f"{weights} carries no '{CONFIG_KEY}' metadata: write it with the converter "
                               "(python -m splavu_ray.models.convert_i3d / convert_vjepa1)")
    return json.loads(meta[CONFIG_KEY])


def read_weights(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, state dict) of converted weights."""
    from safetensors.torch import load_file

    config = read_config(path)
    weights = _weights_path(Path(path).expanduser())
    try:
        return config, load_file(str(weights))
    except Exception as exc:
        raise WeightsFileError(f"cannot read {weights}: {type(exc).__name__}: {exc}") from None


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``module``, failing with the first missing / unexpected / mis-shaped keys named."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]  # BN counter: unused
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        raise WeightsFileError(f"{what} does not match the architecture: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}, shape mismatches {shapes[:5]}")
    module.load_state_dict(state, strict=True)
