"""Temporal action detection on clip-feature sequences, in the style of TriDet / ActionFormer.

Plain PyTorch, no Ray. An untrimmed video is a sequence of non-overlapping window features
(L, d) (splavu_ray.features: window i covers frames [i*clip_len, (i+1)*clip_len)), so positions
are measured in windows and converted to seconds with ``clip_len / fps``.

- ``TADHead``: a temporal feature pyramid (stride 1, 2, 4, ...), a shared classification branch
  (sigmoid, focal loss) and a shared boundary-regression branch (distances to start and end, DIoU loss).
- ``tad_targets``: centre sampling + per-level regression ranges assign each pyramid point at most one
  ground-truth segment (the shortest that qualifies).
- ``decode`` + ``nms_1d``: per-class non-maximum suppression at inference.
- ``average_precision`` / ``mean_average_precision``: the ActivityNet/THUMOS evaluation (greedy matching
  by score, interpolated precision), mAP averaged over tIoU 0.3:0.1:0.7.
- ``evaluate_tad``: detectors trained on frozen raw vs anonymized features of a feature store.

Simplifications against TriDet (documented in docs/multitask.md): plain convolutions instead of SGP
layers, and direct boundary distances instead of the Trident head's binned boundary distributions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TIOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


class TADError(ValueError):
    """Bad input to the detection code; the message names the problem."""


# ------------------------------------------------------------------------------------------------
# Data: untrimmed videos as window sequences
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


# ------------------------------------------------------------------------------------------------
# The head
# ------------------------------------------------------------------------------------------------


class _MaskedConv(nn.Module):
    """Conv1d + LayerNorm + ReLU that keeps padded positions at zero."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 3, stride=stride, padding=1)
        self.norm = nn.LayerNorm(c_out)
        self.stride = stride

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, C, L), mask: (B, L)
        if self.stride > 1:
            mask = mask[:, ::self.stride]
        y = self.conv(x)[..., :mask.shape[1]]
        y = F.relu(self.norm(y.transpose(1, 2)).transpose(1, 2))
        return y * mask.unsqueeze(1).to(y.dtype), mask


@dataclass
class TADOutput:
    cls: list[torch.Tensor]  # per level (B, L_l, C) logits
    reg: list[torch.Tensor]  # per level (B, L_l, 2) distances to start/end, in strides of the level
    masks: list[torch.Tensor]  # per level (B, L_l) valid points
    strides: list[int]


class TADHead(nn.Module):
    """Feature pyramid + shared classification / regression branches (ActionFormer / TriDet layout)."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 128, levels: int = 3, prior: float = 0.01):
        super().__init__()
        if num_classes < 1:
            raise TADError(f"a detector needs at least one class, got {num_classes}")
        self.num_classes, self.levels = num_classes, levels
        self.embed = nn.ModuleList([_MaskedConv(dim, hidden), _MaskedConv(hidden, hidden)])
        self.down = nn.ModuleList([_MaskedConv(hidden, hidden, stride=2) for _ in range(levels - 1)])
        self.cls_branch = _MaskedConv(hidden, hidden)
        self.cls_out = nn.Conv1d(hidden, num_classes, 3, padding=1)
        self.reg_branch = _MaskedConv(hidden, hidden)
        self.reg_out = nn.Conv1d(hidden, 2, 3, padding=1)
        self.scale = nn.Parameter(torch.ones(levels))  # per-level regression scale (FCOS/ActionFormer)
        # Focal-loss prior: start every point at p = prior so the many negatives do not swamp step 1.
        nn.init.constant_(self.cls_out.bias, -float(np.log((1 - prior) / prior)))

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> TADOutput:
        """feats (B, L, d), mask (B, L) True on valid windows."""
        if feats.ndim != 3:
            raise TADError(f"TADHead expects (B, L, d) window features, got shape {tuple(feats.shape)}")
        if mask is None:
            mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        x = feats.transpose(1, 2) * mask.unsqueeze(1).to(feats.dtype)
        for layer in self.embed:
            x, mask = layer(x, mask)
        out = TADOutput([], [], [], [])
        for level in range(self.levels):
            if level:
                x, mask = self.down[level - 1](x, mask)
            m = mask.unsqueeze(1).to(x.dtype)
            c = self.cls_out(self.cls_branch(x, mask)[0]) * m
            r = F.relu(self.reg_out(self.reg_branch(x, mask)[0]) * self.scale[level]) * m
            out.cls.append(c.transpose(1, 2))
            out.reg.append(r.transpose(1, 2))
            out.masks.append(mask)
            out.strides.append(2 ** level)
        return out


# ------------------------------------------------------------------------------------------------
# Targets and losses
# ------------------------------------------------------------------------------------------------


def regression_ranges(levels: int, base: float = 4.0) -> list[tuple[float, float]]:
    """Level l regresses segments whose farther boundary is in [lo_l, hi_l) windows from the point."""
    edges = [0.0] + [base * 2 ** i for i in range(levels - 1)] + [float("inf")]
    return list(zip(edges[:-1], edges[1:]))


def tad_targets(segments: torch.Tensor, labels: torch.Tensor, lengths: list[int], strides: list[int],
                num_classes: int, centre_radius: float = 1.5):
    """Assign ground truth to pyramid points.

    segments (B, S, 2) in windows, labels (B, S) (-1 = padding); lengths[l] points at level l.
    Returns per level: cls targets (B, L_l, C) one-hot, reg targets (B, L_l, 2) in strides, positive mask.
    """
    ranges = regression_ranges(len(strides))
    cls_t, reg_t, pos_t = [], [], []
    valid = labels >= 0  # (B, S)
    seg_len = (segments[..., 1] - segments[..., 0]).clamp_min(1e-6)
    for n, stride, (lo, hi) in zip(lengths, strides, ranges):
        t = (torch.arange(n, device=segments.device, dtype=segments.dtype) + 0.5) * stride  # point centres
        left = t[None, :, None] - segments[:, None, :, 0]  # (B, L, S)
        right = segments[:, None, :, 1] - t[None, :, None]
        centre = segments.mean(-1)[:, None, :]
        radius = centre_radius * stride
        inside_centre = ((t[None, :, None] >= torch.maximum(segments[:, None, :, 0], centre - radius)) &
                         (t[None, :, None] <= torch.minimum(segments[:, None, :, 1], centre + radius)))
        far = torch.maximum(left, right)
        ok = inside_centre & (left > 0) & (right > 0) & (far >= lo) & (far < hi) & valid[:, None, :]
        cost = torch.where(ok, seg_len[:, None, :].expand_as(ok), torch.full_like(left, float("inf")))
        best_cost, best = cost.min(-1)  # the shortest qualifying segment
        pos = torch.isfinite(best_cost)
        lab = labels.gather(1, best).clamp_min(0)
        cls = F.one_hot(lab, num_classes).to(segments.dtype) * pos.unsqueeze(-1)
        reg = torch.stack([left.gather(2, best[..., None])[..., 0], right.gather(2, best[..., None])[..., 0]], -1)
        cls_t.append(cls), reg_t.append(reg / stride * pos.unsqueeze(-1)), pos_t.append(pos)
    return cls_t, reg_t, pos_t


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss (Lin et al.), unreduced."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def diou_loss_1d(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - DIoU of segments given as (distance to start, distance to end) from the same point; (N, 2) -> (N,)."""
    pl, pr = pred[:, 0], pred[:, 1]
    tl, tr = target[:, 0], target[:, 1]
    inter = torch.minimum(pl, tl) + torch.minimum(pr, tr)
    union = (pl + pr) + (tl + tr) - inter
    iou = inter / union.clamp_min(1e-6)
    enclose = torch.maximum(pl, tl) + torch.maximum(pr, tr)
    centre_gap = 0.5 * ((pr - pl) - (tr - tl))
    return 1 - iou + (centre_gap / enclose.clamp_min(1e-6)) ** 2


def tad_loss(out: TADOutput, segments: torch.Tensor, labels: torch.Tensor, centre_radius: float = 1.5) -> dict[str, torch.Tensor]:
    """Focal classification over all valid points + DIoU regression on positives, both / #positives."""
    lengths = [c.shape[1] for c in out.cls]
    num_classes = out.cls[0].shape[-1]
    cls_t, reg_t, pos_t = tad_targets(segments.float(), labels, lengths, out.strides, num_classes, centre_radius)
    # Zero-valued anchors keep both branches in the graph when a batch has no positive (ZeRO hooks).
    cls_l = sum(c.sum() for c in out.cls) * 0.0
    reg_l = sum(r.sum() for r in out.reg) * 0.0
    n_pos = 0
    for c, r, m, ct, rt, pt in zip(out.cls, out.reg, out.masks, cls_t, reg_t, pos_t):
        cls_l = cls_l + (sigmoid_focal_loss(c.float(), ct).sum(-1) * m).sum()
        pt = pt & m
        if pt.any():
            reg_l = reg_l + diou_loss_1d(r.float()[pt], rt[pt]).sum()
        n_pos += int(pt.sum())
    norm = max(1, n_pos)
    cls_l, reg_l = cls_l / norm, reg_l / norm
    return {"loss": cls_l + reg_l, "cls": cls_l.detach(), "reg": reg_l.detach(), "positives": n_pos}


# ------------------------------------------------------------------------------------------------
# Inference: decoding and NMS
# ------------------------------------------------------------------------------------------------


def segment_iou(segment: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """tIoU of one segment (2,) with each of (N, 2)."""
    inter = (torch.minimum(segment[1], others[:, 1]) - torch.maximum(segment[0], others[:, 0])).clamp_min(0)
    union = (segment[1] - segment[0]) + (others[:, 1] - others[:, 0]) - inter
    return inter / union.clamp_min(1e-12)


def nms_1d(segments: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS over (N, 2) segments; returns kept indices by decreasing score."""
    order = scores.argsort(descending=True)
    keep = []
    while order.numel():
        i = order[0]
        keep.append(int(i))
        if order.numel() == 1:
            break
        iou = segment_iou(segments[i], segments[order[1:]])
        order = order[1:][iou <= iou_threshold]
    return torch.as_tensor(keep, dtype=torch.long)


def batched_nms_1d(segments: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Per-class NMS: shift each class to its own stretch of the time axis, then one NMS pass."""
    if segments.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    offset = classes.to(segments.dtype) * (segments.max() - segments.min() + 1.0)
    return nms_1d(segments + offset[:, None], scores, iou_threshold)


@torch.no_grad()
def decode(out: TADOutput, window_s: list[float], score_threshold: float = 1e-3, pre_nms: int = 1000,
           iou_threshold: float = 0.5, max_detections: int = 100) -> list[dict[str, np.ndarray]]:
    """Per video: {"segments" (N, 2) seconds, "scores" (N,), "labels" (N,)} after per-class NMS."""
    results = []
    for b in range(out.cls[0].shape[0]):
        segs, scores, labels = [], [], []
        length = float(out.masks[0][b].sum())
        for c, r, m, stride in zip(out.cls, out.reg, out.masks, out.strides):
            prob = torch.sigmoid(c[b].float())[m[b]]  # (P, C)
            t = (torch.arange(prob.shape[0], dtype=torch.float32) + 0.5) * stride
            dist = r[b].float()[m[b]] * stride
            p_idx, cls_idx = torch.nonzero(prob > score_threshold, as_tuple=True)
            s = prob[p_idx, cls_idx]
            seg = torch.stack([t[p_idx] - dist[p_idx, 0], t[p_idx] + dist[p_idx, 1]], -1).clamp(0, length)
            segs.append(seg), scores.append(s), labels.append(cls_idx)
        seg, score, label = torch.cat(segs), torch.cat(scores), torch.cat(labels)
        good = (seg[:, 1] - seg[:, 0]) > 1e-3
        seg, score, label = seg[good], score[good], label[good]
        top = score.argsort(descending=True)[:pre_nms]
        seg, score, label = seg[top], score[top], label[top]
        keep = batched_nms_1d(seg, score, label, iou_threshold)[:max_detections]
        results.append({"segments": (seg[keep] * window_s[b]).numpy().astype(np.float64),
                        "scores": score[keep].numpy().astype(np.float64), "labels": label[keep].numpy()})
    return results


# ------------------------------------------------------------------------------------------------
# Evaluation: ActivityNet / THUMOS mAP
# ------------------------------------------------------------------------------------------------


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
    entries = [(s, v, j) for v, (_, scores) in enumerate(pred) for j, s in enumerate(scores)]
    if not entries:
        return 0.0
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
    tp_c = np.cumsum(tp)
    fp_c = np.cumsum(1 - tp)
    return interpolated_ap(tp_c / (tp_c + fp_c), tp_c / npos)


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
            gt = [np.asarray(s, np.float64).reshape(-1, 2)[np.asarray(lab) == c] for s, lab in zip(gt_segments, gt_labels)]
            pred = [(np.asarray(d["segments"], np.float64).reshape(-1, 2)[np.asarray(d["labels"]) == c],
                     np.asarray(d["scores"], np.float64)[np.asarray(d["labels"]) == c]) for d in detections]
            aps.append(average_precision(gt, pred, thr))
        per_tiou[f"{thr:.1f}"] = 100.0 * float(np.mean(aps))
    return {"map": float(np.mean(list(per_tiou.values()))), "per_tiou": per_tiou, "classes": len(classes)}


# ------------------------------------------------------------------------------------------------
# Training a detector on frozen features (evaluation protocol)
# ------------------------------------------------------------------------------------------------


def _standardize(train: list[np.ndarray], test: list[np.ndarray]):
    # Same treatment for raw and anonymized features (as the action probe does).
    flat = np.concatenate(train)
    mu, sd = flat.mean(0), flat.std(0) + 1e-6
    return [(x - mu) / sd for x in train], [(x - mu) / sd for x in test]


def video_batch(videos: list[DetectionVideo], feats: list[np.ndarray], max_len: int, rng: np.random.Generator):
    """Cropped, padded tensors for one step: feats (B, L, d), mask, segments (B, S, 2) in windows, labels."""
    xs, segs, labs = [], [], []
    for v, f in zip(videos, feats):
        x, s, lab = crop_video(f, v.segments / v.window_s, v.labels, max_len, rng)
        xs.append(torch.from_numpy(np.array(x, np.float32))), segs.append(s), labs.append(lab)  # a copy: store arrays are read-only
    x, mask = pad_sequences(xs)
    seg, lab = segment_batch(segs, labs)
    return x, mask, seg, lab


def train_detector(videos: list[DetectionVideo], feats: list[np.ndarray], num_classes: int, cfg, seed: int = 0,
                   batch_size: int = 8) -> TADHead:
    """Train a fresh TADHead (cfg: TADTaskConfig) on the given per-video features."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = TADHead(feats[0].shape[-1], num_classes, cfg.hidden, cfg.levels)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=0.05)
    steps = cfg.epochs * -(-len(videos) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    head.train()
    for _ in range(cfg.epochs):
        order = rng.permutation(len(videos))
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            x, mask, seg, lab = video_batch([videos[j] for j in idx], [feats[j] for j in idx], cfg.max_windows, rng)
            loss = tad_loss(head(x, mask), seg, lab, cfg.centre_radius)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            opt.step()
            sched.step()
    return head.eval()


@torch.no_grad()
def detect(head: TADHead, videos: list[DetectionVideo], feats: list[np.ndarray], cfg) -> list[dict]:
    out = []
    for v, f in zip(videos, feats):  # one video at a time: full length, no padding
        res = head(torch.from_numpy(np.ascontiguousarray(f, np.float32))[None])
        out += decode(res, [v.window_s], iou_threshold=cfg.nms_iou, max_detections=cfg.max_detections)
    return out


def detection_map(train: list[DetectionVideo], test: list[DetectionVideo], num_classes: int, cfg,
                  transform=None, seed: int = 0) -> dict:
    """Train on ``train``, detect on ``test``; ``transform`` maps a (L, d) sequence (e.g. f_A)."""
    f = transform or (lambda x: x)
    tr, te = _standardize([f(v.feats) for v in train], [f(v.feats) for v in test])
    head = train_detector(train, tr, num_classes, cfg, seed)
    dets = detect(head, test, te, cfg)
    return mean_average_precision([v.segments for v in test], [v.labels for v in test], dets, num_classes)


def evaluate_tad(cfg, adapter, store) -> dict:
    """results.json "tad": detectors trained on raw vs anonymized features (cfg.loss.tad splits)."""
    from .evaluate import anonymize

    t = cfg.loss.tad
    clip_len = int(store.meta.get("clip_len", cfg.data.clip_len))
    classes = list(store.meta["actions"])
    train, test = (detection_videos(store.load(s), clip_len, classes) for s in (t.train_split, t.test_split))
    for name, vids in ((t.train_split, train), (t.test_split, test)):
        if not vids:
            raise TADError(f"split {name!r} has no videos in the feature store {store.root} (loss.tad.*_split)")
    out = {}
    for tag, f in (("raw", None), ("anonymized", lambda x: anonymize(adapter, x[None])[0])):
        res = detection_map(train, test, len(classes), t, f, cfg.seed)
        out[f"map_{tag}"], out[f"map_per_tiou_{tag}"] = res["map"], res["per_tiou"]
    out["sizes"] = {"train": len(train), "test": len(test), "classes_in_test": res["classes"]}
    return out
