"""The temporal action detection task: a detector trained on raw vs anonymized window features.

THUMOS14 protocol: a fresh ``TADHead`` is trained on the ``eval.tad.train_split`` untrimmed videos
(THUMOS14: its validation videos) and scored on ``eval.tad.test_split`` with the mAP over tIoU 0.3:0.7.
Per-class Soft-NMS (Gaussian, as ActionFormer/TriDet; ``eval.tad.nms=hard`` for greedy NMS) decodes the
detections. Same treatment for raw and anonymized features (standardised with the training videos' statistics).
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import Config
from ..data.feature_store import FeatureStore
from ..data.sequences import DetectionVideo, TADError, detection_videos, video_batch
from ..metrics.detection import detection_matches, mean_average_precision, segment_iou, weighted_map
from ..models.adapter import AnonymizingAdapter
from ..models.heads import TADHead, TADOutput
from ..objectives.detection import tad_loss
from ..progress import Progress
from .report import TableColumn
from .task import EvalInputError, EvalTask, sequence_views, split_rows, standardize
from .uncertainty import Headline, intervals, training_seeds


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


def soft_nms_1d(segments: torch.Tensor, scores: torch.Tensor, sigma: float = 0.5, min_score: float = 1e-3,
                method: str = "gaussian", iou_threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS (Bodla et al. 2017) over (N, 2) segments, as ActionFormer and TriDet decode THUMOS14.

    Hard NMS deletes every segment that overlaps a better one by more than a threshold. In TAD the
    overlapping runners-up are often the better-localised boundaries of the same action (or a second,
    adjacent instance), so deleting them costs recall at the strict tIoU thresholds (0.6, 0.7). Soft-NMS
    keeps them and only lowers their scores by how much they overlap the pick: where the pick misses the
    ground truth at a strict tIoU a runner-up can still match it, and where the pick matched, the runner-up
    is a false positive ranked low, where it costs little precision. That raises mAP at high tIoU.

    Repeatedly take the highest (decayed) score, then decay the rest by their tIoU with it:
    ``gaussian``: score *= exp(-iou^2 / sigma) (ActionFormer/TriDet; no threshold, disjoint segments keep
    their score); ``linear``: score *= 1 - iou where iou > ``iou_threshold``. Segments whose score falls
    below ``min_score`` are dropped. Returns (kept indices, their decayed scores), by decreasing score.
    """
    if method not in ("gaussian", "linear"):
        raise ValueError(f"soft NMS method must be 'gaussian' or 'linear', got {method!r}")
    scores = scores.clone().float()
    rest = torch.nonzero(scores >= min_score).flatten()
    keep, kept = [], []
    while rest.numel():
        top = int(scores[rest].argmax())
        i = rest[top]
        keep.append(int(i)), kept.append(float(scores[i]))
        rest = torch.cat([rest[:top], rest[top + 1:]])
        if not rest.numel():
            break
        iou = segment_iou(segments[i], segments[rest]).float()
        if method == "gaussian":
            decay = torch.exp(-iou.square() / sigma)
        else:
            decay = torch.where(iou > iou_threshold, 1.0 - iou, torch.ones_like(iou))
        scores[rest] *= decay
        rest = rest[scores[rest] >= min_score]
    return torch.as_tensor(keep, dtype=torch.long), torch.as_tensor(kept, dtype=torch.float32)


def batched_soft_nms_1d(segments: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, sigma: float = 0.5,
                        min_score: float = 1e-3, method: str = "gaussian",
                        iou_threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class Soft-NMS: classes on disjoint stretches of the time axis have tIoU 0, so they never decay
    one another (exp(0) = 1). Returns (kept indices, decayed scores), by decreasing score."""
    if segments.numel() == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0)
    offset = classes.to(segments.dtype) * (segments.max() - segments.min() + 1.0)
    return soft_nms_1d(segments + offset[:, None], scores, sigma, min_score, method, iou_threshold)


@torch.no_grad()
def decode(out: TADOutput, window_s: list[float], score_threshold: float = 1e-3, pre_nms: int = 1000,
           iou_threshold: float = 0.5, max_detections: int = 100, nms: str = "soft", sigma: float = 0.5,
           min_score: float = 1e-3) -> list[dict[str, np.ndarray]]:
    """Per video: {"segments" (N, 2) seconds, "scores" (N,), "labels" (N,)} after per-class NMS.

    ``nms="soft"``: Gaussian Soft-NMS (``sigma``, ``min_score``; the scores returned are the decayed ones);
    ``nms="hard"``: greedy NMS at ``iou_threshold``. Either way at most ``max_detections``, by score."""
    if nms not in ("soft", "hard"):
        raise ValueError(f"nms must be 'soft' or 'hard', got {nms!r}")
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
        if nms == "soft":
            keep, score = batched_soft_nms_1d(seg, score, label, sigma, min_score)
            keep, score = keep[:max_detections], score[:max_detections]
        else:
            keep = batched_nms_1d(seg, score, label, iou_threshold)[:max_detections]
            score = score[keep]
        results.append({"segments": (seg[keep] * window_s[b]).numpy().astype(np.float64),
                        "scores": score.numpy().astype(np.float64), "labels": label[keep].numpy()})
    return results


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
    bar = Progress(cfg.epochs, "TAD detector", unit="epoch", delay=5.0)  # shown only when training is slow
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
        bar.update(1)
    bar.close()
    return head.eval()


@torch.no_grad()
def detect(head: TADHead, videos: list[DetectionVideo], feats: list[np.ndarray], cfg) -> list[dict]:
    out = []
    for v, f in zip(videos, feats):  # one video at a time: full length, no padding
        res = head(torch.from_numpy(np.ascontiguousarray(f, np.float32))[None])
        out += decode(res, [v.window_s], iou_threshold=cfg.nms_iou, max_detections=cfg.max_detections,
                      nms=cfg.nms, sigma=cfg.nms_sigma, min_score=cfg.nms_min_score)
    return out


def detection_map(train: list[DetectionVideo], test: list[DetectionVideo], num_classes: int, cfg,
                  transform=None, seed: int = 0) -> dict:
    """Train on ``train``, detect on ``test``; ``transform`` maps a (L, d) sequence (e.g. f_A)."""
    f = transform or (lambda x: x)
    tr, te = standardize([f(v.feats) for v in train], [f(v.feats) for v in test])
    head = train_detector(train, tr, num_classes, cfg, seed)
    dets = detect(head, test, te, cfg)
    res = mean_average_precision([v.segments for v in test], [v.labels for v in test], dets, num_classes)
    return {**res, "detections": dets}


def random_detections(videos: list[DetectionVideo], per_video: list[int], num_classes: int,
                      rng: np.random.Generator) -> list[dict]:
    """A detector that knows nothing: per video as many detections as ``per_video`` says, each a segment
    between two uniform times in the video, a uniform class and a uniform score."""
    out = []
    for v, k in zip(videos, per_video):
        duration = len(v.feats) * v.window_s
        out.append({"segments": np.sort(rng.uniform(0.0, duration, size=(k, 2)), axis=1),
                    "scores": rng.uniform(size=k), "labels": rng.integers(0, num_classes, size=k)})
    return out


def random_detector_map(videos: list[DetectionVideo], per_video: list[int], num_classes: int, draws: int,
                        seed: int) -> float:
    """TAD's chance level: the mAP (same code as the real detector's) of :func:`random_detections`,
    averaged over ``draws`` seeded draws."""
    rng = np.random.default_rng(seed)
    gt_seg, gt_lab = [v.segments for v in videos], [v.labels for v in videos]
    return float(np.mean([mean_average_precision(gt_seg, gt_lab, random_detections(videos, per_video, num_classes,
                                                                                   rng), num_classes)["map"]
                          for _ in range(draws)]))


def evaluate_tad(cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
    """results.json "tad": detectors trained on raw vs anonymized features (eval.tad splits)."""
    t = cfg.eval.tad
    clip_len = int(store.meta.get("clip_len", cfg.data.clip_len))
    classes = list(store.meta["actions"])
    train, test = (detection_videos(store.load(s), clip_len, classes) for s in (t.train_split, t.test_split))
    for name, vids in ((t.train_split, train), (t.test_split, test)):
        if not vids:
            raise TADError(f"split {name!r} has no videos in the feature store {store.root} (eval.tad.*_split)")
    seeds, head = training_seeds(cfg), Headline()
    gt_seg, gt_lab = [v.segments for v in test], [v.labels for v in test]
    out, per_video = {}, None
    for tag, f in sequence_views(adapter):
        per_tiou = []
        for seed in seeds:
            res = detection_map(train, test, len(classes), t, f, seed)
            matches = detection_matches(gt_seg, gt_lab, res["detections"])
            head.add(tag, res["map"], lambda c, m=matches: weighted_map(m, c))
            per_tiou.append(res["per_tiou"])
            per_video = per_video or [len(d["scores"]) for d in res["detections"]]
        out[f"map_{tag}"] = head.point(tag)
        out[f"map_per_tiou_{tag}"] = {k: float(np.mean([p[k] for p in per_tiou])) for k in per_tiou[0]}
    b = cfg.eval.bootstrap  # chance: as many random detections per video as the raw detector made
    out["map_chance"] = random_detector_map(test, per_video, len(classes), b.chance_draws, b.seed)
    out["chance_reference"] = {"map": {"random_detector": out["map_chance"]}}
    out["intervals"] = intervals(cfg, len(test), "test video", {"map": head}, seeds)
    out["sizes"] = {"train": len(train), "test": len(test), "classes_in_test": res["classes"]}
    return out


class TADTask(EvalTask):
    name = "tad"
    columns = (TableColumn("TAD mAP (THUMOS14 protocol)", "tad", "map", True),)

    def check(self, cfg: Config, path: str) -> None:
        t = cfg.eval.tad
        for split in (t.train_split, t.test_split):
            _, rows = split_rows(path, split)
            if not any(r.get("segments") for r in rows):
                raise EvalInputError(f"manifest {path!r}, split {split!r} has no untrimmed videos with action "
                                     "segments (eval.tad.*_split)")

    def run(self, cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
        return evaluate_tad(cfg, adapter, store)
