"""Untrimmed videos as sequences of window features, for temporal action detection and anomaly detection.

An untrimmed video is stored as non-overlapping window features (L, d) (window i covers frames
[i*clip_len, (i+1)*clip_len)), so positions are measured in windows and converted to seconds with
``clip_len / fps``. This module turns feature-store rows into detection videos (segments + classes) and
anomaly videos (a video-level label + anomalous intervals), and cuts them into padded training batches.
Plain NumPy/PyTorch; used by the co-training loop and by the TAD / anomaly evaluation tasks alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class TADError(ValueError):
    """Bad input to the detection code; the message names the problem."""


class AnomalyError(ValueError):
    """Bad input to the anomaly code; the message names the problem."""


# ------------------------------------------------------------------------------------------------
# Detection videos (THUMOS-style: action segments in seconds)
# ------------------------------------------------------------------------------------------------


@dataclass
class DetectionVideo:
    feats: np.ndarray  # (L, d) window features
    window_s: float  # seconds per window
    segments: np.ndarray  # (S, 2) ground-truth [start, end) in seconds
    labels: np.ndarray  # (S,) int64 class ids


def window_seconds(row: dict, clip_len: int) -> float:
    fps = row.get("fps")
    if not fps or fps <= 0:
        raise TADError(f"video {row.get('uri')!r} has no fps: window times cannot be converted to seconds")
    return clip_len / float(fps)


def detection_videos(split, clip_len: int, classes: list[str] | tuple[str, ...]) -> list[DetectionVideo]:
    """FeatureSplit rows -> DetectionVideo; segment labels must be in ``classes``."""
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for row, feats in zip(split.rows, split.clips):
        segs = row.get("segments") or []
        for s in segs:
            if s["label"] not in index:
                raise TADError(f"segment label {s['label']!r} of {row.get('uri')!r} is not in the class vocabulary "
                               f"{list(classes)[:10]}...")
        if len(feats) == 0:
            raise TADError(f"video {row.get('uri')!r} has no window features")
        out.append(DetectionVideo(
            feats, window_seconds(row, clip_len),
            np.array([[s["start"], s["end"]] for s in segs], np.float64).reshape(-1, 2),
            np.array([index[s["label"]] for s in segs], np.int64)))
    return out


def pad_sequences(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(L_i, d)] -> (B, L_max, d) zero-padded and a (B, L_max) mask, True on valid windows."""
    length = max(s.shape[0] for s in seqs)
    x = seqs[0].new_zeros(len(seqs), length, seqs[0].shape[-1])
    mask = torch.zeros(len(seqs), length, dtype=torch.bool, device=x.device)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
        mask[i, :len(s)] = True
    return x, mask


def crop_video(feats: np.ndarray, segments_w: np.ndarray, labels: np.ndarray, max_len: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random crop of at most ``max_len`` windows; segments (in windows) are clipped to the crop and
    dropped when less than half of them remains inside (ActionFormer's truncation rule)."""
    n = len(feats)
    if n <= max_len:
        return feats, segments_w, labels
    start = int(rng.integers(0, n - max_len + 1))
    clipped = np.clip(segments_w - start, 0, max_len)
    length = segments_w[:, 1] - segments_w[:, 0]
    keep = (clipped[:, 1] - clipped[:, 0]) >= 0.5 * np.maximum(length, 1e-6)
    return feats[start:start + max_len], clipped[keep], labels[keep]


def segment_batch(segments: list[np.ndarray], labels: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-video segments (in windows) -> (B, S_max, 2) float and (B, S_max) labels, -1 = padding."""
    s_max = max(1, max(len(s) for s in segments))
    seg = torch.zeros(len(segments), s_max, 2)
    lab = torch.full((len(segments), s_max), -1, dtype=torch.long)
    for i, (s, lb) in enumerate(zip(segments, labels)):
        seg[i, :len(s)] = torch.as_tensor(s, dtype=torch.float32)
        lab[i, :len(lb)] = torch.as_tensor(lb, dtype=torch.long)
    return seg, lab


def video_batch(videos: list[DetectionVideo], feats: list[np.ndarray], max_len: int, rng: np.random.Generator):
    """Cropped, padded tensors for one step: feats (B, L, d), mask, segments (B, S, 2) in windows, labels."""
    xs, segs, labs = [], [], []
    for v, f in zip(videos, feats):
        x, s, lab = crop_video(f, v.segments / v.window_s, v.labels, max_len, rng)
        xs.append(torch.from_numpy(np.array(x, np.float32))), segs.append(s), labs.append(lab)  # a copy: store arrays are read-only
    x, mask = pad_sequences(xs)
    seg, lab = segment_batch(segs, labs)
    return x, mask, seg, lab


# ------------------------------------------------------------------------------------------------
# Anomaly videos (UCF-Crime-style: video-level labels, anomalous intervals for testing)
# ------------------------------------------------------------------------------------------------


@dataclass
class AnomalyVideo:
    feats: np.ndarray  # (L, d) window features
    label: int  # video-level: 1 = abnormal
    num_frames: int  # frames the windows cover (the last window may be padded)
    fps: float
    clip_len: int
    anomaly_segments: np.ndarray  # (S, 2) seconds; only the test split needs them


def anomaly_videos(split, clip_len: int) -> list[AnomalyVideo]:
    out = []
    for row, feats in zip(split.rows, split.clips):
        if row.get("anomaly") is None:
            raise AnomalyError(f"video {row.get('uri')!r} has no video-level anomaly label")
        if len(feats) == 0:
            raise AnomalyError(f"video {row.get('uri')!r} has no window features")
        window_seconds(row, clip_len)  # fails with a clear message when fps is missing
        segs = row.get("anomaly_segments") or []
        n = int(row.get("num_frames") or len(feats) * clip_len)
        out.append(AnomalyVideo(feats, int(bool(row["anomaly"])), min(n, len(feats) * clip_len), float(row["fps"]),
                                clip_len, np.array([[s["start"], s["end"]] for s in segs], np.float64).reshape(-1, 2)))
    return out


def balanced_batch(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Half abnormal, half normal video indices (MGFN loads the two kinds in pairs)."""
    ab, no = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if not len(ab) or not len(no):
        raise AnomalyError(f"weak supervision needs normal and abnormal training videos "
                           f"(got {len(no)} normal, {len(ab)} abnormal)")
    half = max(1, size // 2)
    return np.concatenate([rng.choice(ab, half, replace=len(ab) < half), rng.choice(no, half, replace=len(no) < half)])


def crop(feats: np.ndarray, max_len: int, rng: np.random.Generator) -> np.ndarray:
    if len(feats) <= max_len:
        return feats
    start = int(rng.integers(0, len(feats) - max_len + 1))
    return feats[start:start + max_len]


def sequence_batch(feats: list[np.ndarray], max_len: int, rng: np.random.Generator):
    # np.array copies: store arrays are read-only, and torch wants writable memory
    x, mask = pad_sequences([torch.from_numpy(np.array(crop(f, max_len, rng), np.float32)) for f in feats])
    return x, mask
