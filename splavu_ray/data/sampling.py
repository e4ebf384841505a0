"""Which frames to decode: pure functions from a frame count to frame-index arrays.

Nothing here touches a file, so the decoder can plan every clip of a video before reading it and
gather all of them in one sequential pass (see decode.py).

Every function returns :class:`Indices`: ``indices`` (int64) and ``padded``, the number of index
positions that had to repeat a frame because the video is shorter than asked for (0 = no padding).
Short videos are padded by repeating their LAST frame, so a clip stays in temporal order.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

RngLike = np.random.Generator | int | None


class Indices(NamedTuple):
    indices: np.ndarray  # int64 frame indices, shape depends on the function
    padded: int  # index positions that repeat a frame because the video is too short


def _check(n: int, clip_len: int, stride: int = 1) -> None:
    if n < 1:
        raise ValueError(f"a video needs at least one frame, got n={n}")
    if clip_len < 1 or stride < 1:
        raise ValueError(f"clip_len and stride must be >= 1, got clip_len={clip_len}, stride={stride}")


def clip_span(clip_len: int, stride: int = 1) -> int:
    """Frames covered by one clip from its first to its last index."""
    return (clip_len - 1) * stride + 1


def _clip_from(starts: np.ndarray, n: int, clip_len: int, stride: int) -> Indices:
    raw = starts[:, None] + np.arange(clip_len, dtype=np.int64)[None, :] * stride
    return Indices(np.minimum(raw, n - 1), int((raw > n - 1).sum()))


def train_clip_indices(n: int, clip_len: int = 16, stride: int = 1, rng: RngLike = None) -> Indices:
    """One clip of ``clip_len`` frames ``stride`` apart at a uniformly random start: shape (clip_len,)."""
    _check(n, clip_len, stride)
    rng = np.random.default_rng(rng)
    last_start = max(n - clip_span(clip_len, stride), 0)
    start = np.array([rng.integers(0, last_start + 1)], dtype=np.int64)
    idx, padded = _clip_from(start, n, clip_len, stride)
    return Indices(idx[0], padded)


def eval_clip_indices(n: int, clip_len: int = 16, num_clips: int = 5, stride: int = 1) -> Indices:
    """``num_clips`` clips with evenly spaced starts from the first to the last possible one:
    shape (num_clips, clip_len). The first clip starts at frame 0 and the last ends at frame n-1."""
    _check(n, clip_len, stride)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    last_start = max(n - clip_span(clip_len, stride), 0)
    starts = np.rint(np.linspace(0, last_start, num_clips)).astype(np.int64)
    return _clip_from(starts, n, clip_len, stride)


def window_indices(n: int, clip_len: int = 16) -> Indices:
    """Sequential non-overlapping windows covering the whole video (untrimmed tasks):
    shape (ceil(n / clip_len), clip_len); only the last window can be padded."""
    _check(n, clip_len)
    num = -(-n // clip_len)
    starts = np.arange(num, dtype=np.int64) * clip_len
    return _clip_from(starts, n, clip_len, 1)


def static_frame_indices(n: int, k: int = 10) -> Indices:
    """``k`` evenly spaced frames for static clips: the centres of k equal segments, shape (k,).

    Centres rather than np.linspace(0, n-1) keep the very first and last frames (often fades or
    black) out of the sample. With n < k frames repeat; ``padded`` counts the k - n repeats.
    """
    _check(n, 1)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    idx = np.floor((np.arange(k) + 0.5) * n / k).astype(np.int64)
    return Indices(np.minimum(idx, n - 1), max(k - n, 0))


def plan_clips(
    mode: str,
    n: int,
    clip_len: int = 16,
    num_clips: int | None = None,
    stride: int = 1,
    rng: RngLike = None,
) -> Indices:
    """Clip indices for a sampling mode, always shaped (num_clips, clip_len).

    mode: "train" (``num_clips`` random clips, default 1), "eval" (evenly spaced, default 5) or
    "windows" (all non-overlapping windows; num_clips is ignored).
    """
    if mode == "train":
        rng = np.random.default_rng(rng)
        parts = [train_clip_indices(n, clip_len, stride, rng) for _ in range(num_clips or 1)]
        return Indices(np.stack([p.indices for p in parts]), sum(p.padded for p in parts))
    if mode == "eval":
        return eval_clip_indices(n, clip_len, num_clips or 5, stride)
    if mode == "windows":
        return window_indices(n, clip_len)
    raise ValueError(f"unknown clip sampling mode {mode!r}; expected 'train', 'eval' or 'windows'")
