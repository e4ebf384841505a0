"""Temporal action detection metrics: the ActivityNet / THUMOS mAP.

Greedy matching by score, interpolated precision, mAP averaged over tIoU 0.3:0.1:0.7 (in percent).
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.sequences import TADError
from .bootstrap import in_row_blocks

TIOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def segment_iou(segment: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """tIoU of one segment (2,) with each of (N, 2)."""
    inter = (torch.minimum(segment[1], others[:, 1]) - torch.maximum(segment[0], others[:, 0])).clamp_min(0)
    union = (segment[1] - segment[0]) + (others[:, 1] - others[:, 0]) - inter
    return inter / union.clamp_min(1e-12)


def _iou_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    inter = np.clip(np.minimum(pred[:, None, 1], gt[None, :, 1]) - np.maximum(pred[:, None, 0], gt[None, :, 0]), 0, None)
    union = (pred[:, 1] - pred[:, 0])[:, None] + (gt[:, 1] - gt[:, 0])[None, :] - inter
    return inter / np.maximum(union, 1e-12)


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision envelope (ActivityNet's interpolated_prec_rec)."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def average_precision(gt: list[np.ndarray], pred: list[tuple[np.ndarray, np.ndarray]], tiou: float) -> float:
    """AP of one class at one tIoU threshold.

    gt[v]: (G, 2) segments of video v; pred[v]: ((P, 2) segments, (P,) scores). Predictions of all videos
    are ranked by score; each takes the unmatched ground truth of its video with the highest tIoU >= tiou
    (ActivityNet's compute_average_precision_detection); a ground truth is matched at most once.
    """
    npos = sum(len(g) for g in gt)
    if npos == 0:
        raise TADError("average precision is undefined for a class without ground truth")
    _, tp = match_detections(gt, pred, tiou)
    if not len(tp):
        return 0.0
    tp_c = np.cumsum(tp)
    fp_c = np.cumsum(1 - tp)
    return interpolated_ap(tp_c / (tp_c + fp_c), tp_c / npos)


def match_detections(gt: list[np.ndarray], pred: list[tuple[np.ndarray, np.ndarray]],
                     tiou: float) -> tuple[np.ndarray, np.ndarray]:
    """The greedy matching of :func:`average_precision`: the predictions of all videos ranked by score
    (stable), as (video index, 1.0 if a true positive else 0.0) per ranked prediction. A prediction is
    matched within its own video only, so the flags do not change when test videos are resampled."""
    entries = [(s, v, j) for v, (_, scores) in enumerate(pred) for j, s in enumerate(scores)]
    entries.sort(key=lambda e: -e[0])  # stable: ties keep their input order
    used = [np.zeros(len(g), bool) for g in gt]
    tp = np.zeros(len(entries))
    for k, (_, v, j) in enumerate(entries):
        if not len(gt[v]):
            continue
        ious = _iou_matrix(pred[v][0][j:j + 1], gt[v])[0]
        for g in np.argsort(-ious, kind="stable"):
            if ious[g] < tiou:
                break
            if not used[v][g]:
                used[v][g] = True
                tp[k] = 1
                break
    return np.array([e[1] for e in entries], dtype=np.int64), tp


def _class_inputs(gt_segments, gt_labels, detections, c):
    gt = [np.asarray(s, np.float64).reshape(-1, 2)[np.asarray(lab) == c] for s, lab in zip(gt_segments, gt_labels)]
    pred = [(np.asarray(d["segments"], np.float64).reshape(-1, 2)[np.asarray(d["labels"]) == c],
             np.asarray(d["scores"], np.float64)[np.asarray(d["labels"]) == c]) for d in detections]
    return gt, pred


def detection_matches(gt_segments: list[np.ndarray], gt_labels: list[np.ndarray], detections: list[dict],
                      thresholds=TIOU_THRESHOLDS) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For every (tIoU threshold, class with ground truth): (ranked predictions' video indices, their
    true-positive flags, ground-truth count per video). What :func:`weighted_map` resamples."""
    classes = sorted({int(c) for lab in gt_labels for c in lab})
    out = []
    for thr in thresholds:
        for c in classes:
            gt, pred = _class_inputs(gt_segments, gt_labels, detections, c)
            video, tp = match_detections(gt, pred, thr)
            out.append((video, tp, np.array([len(g) for g in gt], np.float64)))
    return out


def _weighted_ap(w: np.ndarray, tp: np.ndarray) -> np.ndarray:
    # (b, P) weights of the ranked predictions -> the interpolated AP's numerator (times the positives)
    tp_c = np.cumsum(w * tp, axis=1)
    drawn = np.cumsum(w, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(drawn > 0, tp_c / drawn, 0.0)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    return (w * tp * envelope).sum(axis=1)


def weighted_map(matches: list[tuple[np.ndarray, np.ndarray, np.ndarray]], counts: np.ndarray,
                 thresholds: int = len(TIOU_THRESHOLDS)) -> np.ndarray:
    """The THUMOS mAP (percent) of each resample of the test videos, counts (b, videos) -> (b,).

    A video drawn k times brings k copies of its predictions (with the same match flags) and of its
    ground truth: the interpolated AP of :func:`average_precision` on the weighted ranking. Classes with no
    ground truth drawn are left out of that resample's mean (as classes absent from a test set)."""
    aps = []
    for video, tp, ngt in matches:
        npos = counts @ ngt
        if not len(tp):
            aps.append(np.where(npos > 0, 0.0, np.nan))
            continue
        ap = in_row_blocks(lambda c, v=video, t=tp: _weighted_ap(c[:, v], t), counts, len(tp))
        with np.errstate(invalid="ignore", divide="ignore"):  # no ground truth drawn: NaN, left out below
            aps.append(np.where(npos > 0, ap / npos, np.nan))
    per = np.stack(aps, axis=1).reshape(len(counts), thresholds, -1)  # (b, tIoU, class)
    valid = np.isfinite(per)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_tiou = np.where(valid, per, 0.0).sum(axis=2) / valid.sum(axis=2)
    return 100.0 * per_tiou.mean(axis=1)


def mean_average_precision(gt_segments: list[np.ndarray], gt_labels: list[np.ndarray], detections: list[dict],
                           num_classes: int, thresholds=TIOU_THRESHOLDS) -> dict:
    """mAP (in percent) per tIoU threshold and averaged, over classes with ground truth in the test set."""
    if len(gt_segments) != len(detections):
        raise TADError(f"{len(detections)} detection lists for {len(gt_segments)} videos")
    classes = sorted({int(c) for lab in gt_labels for c in lab})
    if not classes:
        raise TADError("no ground-truth segment in the test videos: mAP is undefined")
    if classes[-1] >= num_classes:
        raise TADError(f"ground-truth class {classes[-1]} is outside the {num_classes} classes")
    per_tiou = {}
    for thr in thresholds:
        aps = []
        for c in classes:
            gt, pred = _class_inputs(gt_segments, gt_labels, detections, c)
            aps.append(average_precision(gt, pred, thr))
        per_tiou[f"{thr:.1f}"] = 100.0 * float(np.mean(aps))
    return {"map": float(np.mean(list(per_tiou.values()))), "per_tiou": per_tiou, "classes": len(classes)}
