"""Decode one manifest row into the uint8 frames feature extraction embeds (the decode half of extraction).

Plain PyAV + NumPy, no model and no Ray: the feature job runs this in CPU tasks and hands the frames to
the embedding actors (models.embedder), so an accelerator never waits on a decoder. What a row becomes
(:meth:`RowDecoder.parts`):

- a trimmed video: ``data.num_eval_clips`` evenly spaced clips (C, T, H, W, 3) and
  ``data.num_static_frames`` static frames (K, H, W, 3), in ONE part;
- an image: one static frame and no clip, in one part;
- an untrimmed video (segments, an anomaly label, or a split in ``data.untrimmed_splits``): its
  non-overlapping windows, streamed with bounded memory in parts of at most ``windows_per_part``
  windows each, so a long video never sits whole in memory or in one object;
- a bad file: one part with ``ok`` False, its ``reason`` and ``detail`` (data.decode.REASONS).

Every part carries ``part`` (its position) and ``last``; the last part of a row also carries what the
decoder learnt about the file (``num_frames``, ``fps``, ``padded``, ``problem``). Frames are decoded
straight to the eval resize's short side (``decode_size``), so memory per part is bounded.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..config import DataConfig
from .decode import (
    DecodeError,
    check_row,
    default_min_frames,
    iter_windows,
    try_load_clips,
)
from .feature_store import is_untrimmed
from .person_masks import RowMasks
from .pixel_ops import NEEDS_MASK

EVAL_RESIZE = 256 / 224  # data.transforms.eval_transform resizes the short side to size * 256 / 224


def decode_size(image_size: int) -> int:
    """Short side to decode to for a backbone of input side ``image_size`` (the eval resize's)."""
    return int(round(image_size * EVAL_RESIZE))


def empty_frames(rank: int) -> np.ndarray:
    """A zero-length uint8 frame array of ``rank`` dimensions (no clip / no static frame)."""
    return np.zeros((0,) + (1,) * (rank - 2) + (3,), np.uint8)


class RowDecoder:
    """``RowDecoder(cfg.data, image_size, windows_per_part).parts(row)`` -> the row's decoded parts."""

    def __init__(self, data: DataConfig, image_size: int, windows_per_part: int = 8):
        self.data = data
        self.size = decode_size(image_size)
        self.windows_per_part = max(1, int(windows_per_part))
        self.min_frames = data.min_frames if data.min_frames is not None else default_min_frames(data.clip_len)

    def parts(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        # data.pixel.transform=blacken works here, where each decoded frame's index is known: its mask is cut
        # to the same frames and resized to the decode size (data.person_masks); the embedder skips it.
        masks = RowMasks(row) if self.data.pixel.transform in NEEDS_MASK else None
        if row["media"] != "image" and is_untrimmed(row, self.data.untrimmed_splits):
            yield from self._windows(row, masks)
            return
        d = self.data
        if row["media"] == "image":
            dec = try_load_clips(row, mode="static", clip_len=d.clip_len, static_k=1, size=self.size)
        else:
            dec = try_load_clips(row, mode="eval", clip_len=d.clip_len, num_clips=d.num_eval_clips,
                                 static_k=d.num_static_frames, size=self.size, stride=d.frame_stride,
                                 min_frames=self.min_frames)
        if not dec["ok"]:
            yield _failed(0, dec["reason"], dec["detail"])
            return
        if masks is not None:
            if "clips" in dec:
                dec["clips"] = masks.blacken(dec["clips"], dec["clip_indices"])
            if "static" in dec:
                dec["static"] = masks.blacken(dec["static"], dec["static_indices"])
        yield {"part": 0, "last": True, "ok": True, "reason": None, "detail": None,
               "clips": dec["clips"] if "clips" in dec else empty_frames(5),
               "static": dec.get("static", empty_frames(4)), "padded": bool(dec.get("padded")),
               "num_frames": dec.get("num_frames"), "fps": dec.get("fps"), "problem": dec.get("problem")}

    def _windows(self, row: dict[str, Any], masks: RowMasks | None = None) -> Iterator[dict[str, Any]]:
        chunk: list[np.ndarray] = []
        padded, part, info, start = 0, 0, {}, 0
        try:
            for window, pad in iter_windows(row["uri"], self.data.clip_len, size=self.size, info=info):
                if masks is not None:  # frames start.. of the video; a padded tail repeats its last frame
                    real = len(window) - pad
                    window = masks.blacken(window, start + np.minimum(np.arange(len(window)), real - 1))
                    start += real
                chunk.append(window)
                padded += pad
                if len(chunk) == self.windows_per_part:
                    yield _window_part(part, chunk)
                    part, chunk = part + 1, []
        except DecodeError as exc:
            yield _failed(part, exc.reason, exc.detail)
            return
        try:  # an untrimmed video too short to be one
            check_row(row["uri"], None, False, int(info.get("num_frames") or 0), self.min_frames, info.get("problem"))
        except DecodeError as exc:
            yield _failed(part, exc.reason, exc.detail)
            return
        last = _window_part(part, chunk)
        last.update(last=True, padded=padded > 0, num_frames=info.get("num_frames"), fps=info.get("fps"),
                    problem=info.get("problem"))
        yield last


def _window_part(part: int, windows: list[np.ndarray]) -> dict[str, Any]:
    return {"part": part, "last": False, "ok": True, "reason": None, "detail": None,
            "clips": np.stack(windows) if windows else empty_frames(5), "static": empty_frames(4),
            "padded": False, "num_frames": None, "fps": None, "problem": None}


def _failed(part: int, reason: str, detail: str | None) -> dict[str, Any]:
    return {"part": part, "last": True, "ok": False, "reason": reason, "detail": detail or reason,
            "clips": empty_frames(5), "static": empty_frames(4), "padded": False, "num_frames": None,
            "fps": None, "problem": None}
