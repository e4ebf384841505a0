"""The frozen-feature embedder: decoded uint8 frames -> transform -> frozen backbone (the embed half).

Plain PyTorch. Decoding is the data layer's (:class:`splavu_ray.data.frames.RowDecoder`, run in CPU tasks
by the feature job); :class:`FeatureEmbedder` turns the decoded parts of a row into features and is what
the feature job's embedding actors hold (one GPU each on a GPU cluster); nothing here knows about Ray.
:func:`join_parts` puts the embedded parts of one row back together. :class:`Embedder` chains the two
halves in one process (a row at a time): the in-process reference the tests and the single-process
baseline of benchmarks/extract_scaling.py use.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from ..config import Config
from ..data.frames import RowDecoder
from ..data.pixel_ops import LEARNED, NEEDS_MASK, apply_pixel_transform
from ..data.transforms import eval_transform
from .backbone import build_backbone
from .pixel_anonymizer import anonymize_normalized, load_pixel_anonymizer


class FeatureEmbedder:
    """Transform + frozen backbone: uint8 clips / static frames of a decoded part -> float32 features."""

    def __init__(self, cfg: Config):
        import torch

        self.cfg = cfg
        self.device = "cuda" if cfg.scaling.use_gpu and torch.cuda.is_available() else "cpu"
        self.backbone = build_backbone(cfg.backbone, self.device, cfg.data.clip_len)
        self.size = self.backbone.image_size
        self.dim = self.backbone.embed_dim
        px = cfg.data.pixel  # data.pixel.transform=learned: f_P on the backbone's input (after the eval crop)
        self.anonymizer = load_pixel_anonymizer(px.anonymizer, self.device) if px.transform == LEARNED else None

    def _learned(self, x):
        """f_P on normalised clips / frames (the transform=learned store), else ``x`` as it is."""
        return x if self.anonymizer is None else anonymize_normalized(self.anonymizer, x.to(self.device))

    def embed(self, clips_uint8: np.ndarray, static: bool = False) -> np.ndarray:
        """(C, T, H, W, 3) uint8 clips, or (K, H, W, 3) frames tiled into static clips -> (N, d) float32."""
        import torch

        out, bs, t = [], self.cfg.backbone.batch_size, self.cfg.data.clip_len
        with torch.inference_mode():
            for i in range(0, len(clips_uint8), bs):
                frames = clips_uint8[i:i + bs]  # frames from Arrow are read-only: torch wants its own copy
                chunk = torch.from_numpy(np.ascontiguousarray(frames) if frames.flags.writeable else np.array(frames))
                px = self.cfg.data.pixel
                # a pixel baseline: the frames change before the encoder sees them (blacken already did, at
                # decode: data.frames, where the frame indices its masks need are known)
                if px.transform is not None and px.transform not in NEEDS_MASK and px.transform != LEARNED:
                    chunk = apply_pixel_transform(chunk, px.transform, px.blur_sigma, px.pixelate_blocks)
                if static:  # transform each frame once, then tile it over the clip (a free view)
                    x = self._learned(eval_transform(chunk.unsqueeze(1), self.size)).expand(-1, t, -1, -1, -1)
                else:
                    x = self._learned(eval_transform(chunk, self.size))
                out.append(self.backbone(x.to(self.device)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_part(self, part: dict[str, Any]) -> dict[str, Any]:
        """A decoded part (data.frames) with its ``clips`` / ``static`` frames replaced by their features."""
        out = {k: v for k, v in part.items() if k not in ("clips", "static")}
        ok = part["ok"]
        out["clips"] = self.embed(part["clips"]) if ok and len(part["clips"]) else np.zeros((0, self.dim), np.float32)
        out["static"] = (self.embed(part["static"], static=True) if ok and len(part["static"])
                         else np.zeros((0, self.dim), np.float32))
        return out


def join_parts(parts: Iterable[dict[str, Any]], dim: int) -> dict[str, Any]:
    """One row's result from its embedded parts (any order): the clip features of every part in order,
    what the last part learnt about the file, or the failure of the part that failed."""
    parts = sorted(parts, key=lambda p: p["part"])
    bad = [p for p in parts if not p["ok"]]
    if bad:
        return {"ok": False, "reason": bad[0]["reason"], "detail": bad[0]["detail"],
                "clips": np.zeros((0, dim), np.float32), "static": np.zeros((0, dim), np.float32),
                "padded": False, "num_frames": None, "fps": None}
    last = parts[-1]
    clips = [np.asarray(p["clips"], np.float32).reshape(-1, dim) for p in parts]
    return {"ok": True, "reason": last.get("problem"), "detail": None,
            "clips": np.concatenate(clips) if clips else np.zeros((0, dim), np.float32),
            "static": np.asarray(last["static"], np.float32).reshape(-1, dim), "padded": bool(last["padded"]),
            "num_frames": last.get("num_frames"), "fps": float(last["fps"]) if last.get("fps") else None}


def float_lists(arrays: list[np.ndarray]) -> pa.ListArray:
    """Arrow list<float32> column of the flattened arrays (no Python lists in between)."""
    flat = [np.asarray(a, np.float32).reshape(-1) for a in arrays]
    offsets = np.zeros(len(flat) + 1, np.int32)
    np.cumsum([len(a) for a in flat], out=offsets[1:])
    values = np.concatenate(flat) if flat else np.zeros(0, np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32()))


class Embedder:
    """Decode (data.frames) + embed (:class:`FeatureEmbedder`) one row at a time, in this process."""

    def __init__(self, cfg_dict: dict[str, Any], threads: int = 1):
        self.cfg = Config.model_validate(cfg_dict)
        self.model = FeatureEmbedder(self.cfg)
        self.backbone, self.size, self.device = self.model.backbone, self.model.size, self.model.device
        self.decoder = RowDecoder(self.cfg.data, self.size, self.cfg.backbone.batch_size)
        self.min_frames = self.decoder.min_frames

    def embed_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """The features of one manifest row (:func:`join_parts`'s dict)."""
        return join_parts((self.model.embed_part(p) for p in self.decoder.parts(row)), self.model.dim)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        res = [self.embed_row(r) for r in rows]
        cols = {
            "key": pa.array([r["_key"] for r in rows], pa.int64()), "ok": pa.array([r["ok"] for r in res]),
            "reason": pa.array([r["reason"] for r in res], pa.string()),
            "detail": pa.array([r["detail"] for r in res], pa.string()),
            "clips": float_lists([r["clips"] for r in res]),
            "num_clips": pa.array([len(r["clips"]) for r in res], pa.int32()),
            "static": float_lists([r["static"] for r in res]),
            "padded": pa.array([r["padded"] for r in res]),
            "dim": pa.array([self.model.dim] * len(res), pa.int32()),
            "num_frames": pa.array([r["num_frames"] for r in res], pa.int64()),
            "fps": pa.array([r["fps"] for r in res], pa.float64()),
        }
        return pa.Table.from_pydict(cols, schema=RESULT_SCHEMA)


RESULT_SCHEMA = pa.schema([
    ("key", pa.int64()), ("ok", pa.bool_()), ("reason", pa.string()), ("detail", pa.string()),
    ("clips", pa.list_(pa.float32())), ("num_clips", pa.int32()), ("static", pa.list_(pa.float32())),
    ("padded", pa.bool_()), ("dim", pa.int32()), ("num_frames", pa.int64()), ("fps", pa.float64()),
])
