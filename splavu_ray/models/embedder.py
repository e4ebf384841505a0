"""The frozen-feature embedder: decode one manifest row with PyAV, transform it, run the frozen backbone.

Plain PyTorch + PyAV. The feature-extraction job (splavu_ray.distributed.feature_job) holds one
``Embedder`` per Ray Data actor; nothing here knows about Ray. Per row: trimmed videos give
``data.num_eval_clips`` evenly spaced clips + ``data.num_static_frames`` static clips; untrimmed videos
(rows with segments or an anomaly label) give non-overlapping windows, streamed with bounded memory;
images give one static clip. A bad file becomes ``{"ok": False, "reason": ..., "detail": ...}``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import Config
from ..data.decode import DecodeError, check_row, default_min_frames, iter_windows, try_load_clips
from ..data.feature_store import is_untrimmed
from ..data.pixel_ops import apply_pixel_transform
from ..data.transforms import eval_transform
from .backbone import build_backbone


class Embedder:
    """Decode + transform + frozen backbone for one row at a time (lives inside a Ray actor)."""

    def __init__(self, cfg_dict: dict[str, Any], threads: int = 2):
        import torch

        self.cfg = Config.model_validate(cfg_dict)
        self.device = "cuda" if self.cfg.scaling.use_gpu and torch.cuda.is_available() else "cpu"
        self.backbone = build_backbone(self.cfg.backbone, self.device, self.cfg.data.clip_len)
        self.size = self.backbone.image_size
        d = self.cfg.data
        self.min_frames = d.min_frames if d.min_frames is not None else default_min_frames(d.clip_len)
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads))

    def _embed(self, clips_uint8: np.ndarray, static: bool = False) -> np.ndarray:
        """(C, T, H, W, 3) uint8 clips, or (K, H, W, 3) frames tiled into static clips -> (N, d) float32."""
        import torch

        out, bs, t = [], self.cfg.backbone.batch_size, self.cfg.data.clip_len
        for i in range(0, len(clips_uint8), bs):
            chunk = torch.from_numpy(np.ascontiguousarray(clips_uint8[i:i + bs]))
            px = self.cfg.data.pixel
            if px.transform is not None:  # a pixel baseline: the frames change before the encoder sees them
                chunk = apply_pixel_transform(chunk, px.transform, px.blur_sigma, px.pixelate_blocks)
            if static:  # transform each frame once, then tile it over the clip (a free view)
                x = eval_transform(chunk.unsqueeze(1), self.size).expand(-1, t, -1, -1, -1)
            else:
                x = eval_transform(chunk, self.size)
            out.append(self.backbone(x.to(self.device)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.backbone.embed_dim), np.float32)

    def _decode(self, row: dict[str, Any]) -> dict[str, Any]:
        d = self.cfg.data
        short = int(round(self.size * 256 / 224))  # decode straight to the eval resize: bounded memory
        if row["media"] == "image":
            return try_load_clips(row, mode="static", clip_len=d.clip_len, static_k=1, size=short)
        if is_untrimmed(row, self.cfg.data.untrimmed_splits):
            return {"ok": True, "untrimmed": True}
        return try_load_clips(row, mode="eval", clip_len=d.clip_len, num_clips=d.num_eval_clips,
                              static_k=d.num_static_frames, size=short, stride=d.frame_stride,
                              min_frames=self.min_frames)

    def _windows(self, row: dict[str, Any]) -> dict[str, Any]:
        feats, chunk, padded, info = [], [], 0, {}
        short = int(round(self.size * 256 / 224))
        try:
            for window, pad in iter_windows(row["uri"], self.cfg.data.clip_len, size=short, info=info):
                chunk.append(window)
                padded += pad
                if len(chunk) == self.cfg.backbone.batch_size:
                    feats.append(self._embed(np.stack(chunk)))
                    chunk = []
        except DecodeError as exc:
            return {"ok": False, "reason": exc.reason, "detail": exc.detail}
        if chunk:
            feats.append(self._embed(np.stack(chunk)))
        if not feats:
            return {"ok": False, "reason": "no_frames", "detail": "no window decoded"}
        try:  # an untrimmed video too short to be one
            check_row(row["uri"], None, False, int(info.get("num_frames") or 0), self.min_frames, info.get("problem"))
        except DecodeError as exc:
            return {"ok": False, "reason": exc.reason, "detail": exc.detail}
        return {"ok": True, "clips": np.concatenate(feats), "static": np.zeros((0, self.backbone.embed_dim)),
                "padded": padded > 0, "num_frames": info.get("num_frames"), "fps": info.get("fps"),
                "problem": info.get("problem")}

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        decoded = list(self.pool.map(self._decode, rows))
        out = []
        for row, dec in zip(rows, decoded):
            if dec.get("untrimmed"):
                dec = self._windows(row)
                res = dec
            elif dec["ok"]:
                clips = self._embed(dec["clips"]) if "clips" in dec else np.zeros((0, self.backbone.embed_dim))
                static = self._embed(dec["static"], static=True)
                res = {"ok": True, "clips": clips, "static": static, "padded": bool(dec.get("padded")),
                       "num_frames": dec.get("num_frames"), "fps": dec.get("fps"), "problem": dec.get("problem")}
            else:
                res = dec
            out.append({
                "key": row["_key"], "ok": bool(res["ok"]), "reason": res.get("reason") or res.get("problem"),
                "detail": res.get("detail"),
                "clips": np.asarray(res.get("clips", np.zeros(0)), np.float32).reshape(-1).tolist() if res["ok"] else [],
                "num_clips": int(len(res["clips"])) if res["ok"] else 0,
                "static": np.asarray(res.get("static", np.zeros(0)), np.float32).reshape(-1).tolist() if res["ok"] else [],
                "padded": bool(res.get("padded", False)), "dim": self.backbone.embed_dim,
                "num_frames": res.get("num_frames"), "fps": float(res["fps"]) if res.get("fps") else None,
            })
        return pa.Table.from_pylist(out, schema=RESULT_SCHEMA)


RESULT_SCHEMA = pa.schema([
    ("key", pa.int64()), ("ok", pa.bool_()), ("reason", pa.string()), ("detail", pa.string()),
    ("clips", pa.list_(pa.float32())), ("num_clips", pa.int32()), ("static", pa.list_(pa.float32())),
    ("padded", pa.bool_()), ("dim", pa.int32()), ("num_frames", pa.int64()), ("fps", pa.float64()),
])
