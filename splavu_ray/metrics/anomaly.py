"""Anomaly detection metric: frame-level ROC AUC (UCF-Crime protocol, scikit-learn).

Window scores are spread over the frames each window covers; labels come from the annotated
anomalous intervals.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from ..data.sequences import AnomalyError, AnomalyVideo


def frame_scores(window_scores: np.ndarray, num_frames: int, clip_len: int) -> np.ndarray:
    """Each window's score on every frame it covers: (L,) -> (num_frames,)."""
    window_scores = np.asarray(window_scores, np.float64)
    if num_frames > len(window_scores) * clip_len:
        raise AnomalyError(f"{num_frames} frames but only {len(window_scores)} windows of {clip_len} frames")
    return np.repeat(window_scores, clip_len)[:num_frames]


def frame_labels(segments: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
    """1 on frames whose time t = i / fps lies in an anomalous [start, end) interval."""
    t = np.arange(num_frames) / fps
    out = np.zeros(num_frames, np.int64)
    for start, end in np.asarray(segments, np.float64).reshape(-1, 2):
        out[(t >= start) & (t < end)] = 1
    return out


def frame_auc(videos: list[AnomalyVideo], window_scores: list[np.ndarray]) -> float:
    """Frame-level ROC AUC in percent over all test videos' frames concatenated (UCF-Crime protocol)."""
    if len(videos) != len(window_scores):
        raise AnomalyError(f"{len(window_scores)} score lists for {len(videos)} videos")
    y = np.concatenate([frame_labels(v.anomaly_segments, v.num_frames, v.fps) for v in videos])
    s = np.concatenate([frame_scores(w, v.num_frames, v.clip_len) for v, w in zip(videos, window_scores)])
    if y.min() == y.max():
        raise AnomalyError("frame-level AUC needs both anomalous and normal frames in the test videos")
    return 100.0 * float(roc_auc_score(y, s))


def frame_elements(videos: list[AnomalyVideo], window_scores: list[np.ndarray]):
    """The frames of :func:`frame_auc`, grouped per (video, window, label): (scores, labels, video index,
    frame count) per group. Frames of one group share score and label, so a weighted AUC over the groups
    equals the frame-level AUC (splavu_ray.metrics.bootstrap.weighted_auc resamples the videos)."""
    if len(videos) != len(window_scores):
        raise AnomalyError(f"{len(window_scores)} score lists for {len(videos)} videos")
    scores, labels, unit, weight = [], [], [], []
    for i, (v, w) in enumerate(zip(videos, window_scores)):
        y = frame_labels(v.anomaly_segments, v.num_frames, v.fps)
        frame_scores(w, v.num_frames, v.clip_len)  # the same checks as frame_auc
        window = np.arange(v.num_frames) // v.clip_len
        key, count = np.unique(2 * window + y, return_counts=True)
        scores.append(np.asarray(w, np.float64)[key // 2])
        labels.append(key % 2)
        unit.append(np.full(len(key), i))
        weight.append(count)
    return (np.concatenate(scores), np.concatenate(labels), np.concatenate(unit),
            np.concatenate(weight).astype(np.float64))
