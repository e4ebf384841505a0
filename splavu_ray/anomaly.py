"""Weakly supervised anomaly detection on clip-feature sequences, in the style of MGFN.

Plain PyTorch, no Ray. Training sees only video-level labels (normal / abnormal); the test metric is the
frame-level ROC AUC (scikit-learn) against annotated anomalous intervals, as on UCF-Crime.

- ``AnomalyHead``: temporal convolutions over the window sequence, a per-window anomaly logit and the
  per-window feature magnitude (MGFN's feature-amplification signal).
- ``anomaly_loss``: sigmoid cross-entropy of the video score (mean of its top-k window scores),
  temporal smoothness and sparsity of abnormal videos' scores (weights from RTFM/MGFN), and the
  feature-magnitude contrastive term: the top-k-magnitude features of abnormal videos are pushed at
  least ``margin`` away from normal ones while videos of the same label are pulled together.
- ``frame_auc``: window scores spread over the frames each window covers; labels from the segments.
- ``evaluate_anomaly``: heads trained on frozen raw vs anonymized features of a feature store.

Simplification against MGFN (docs/multitask.md): plain convolutions instead of its Glance/Focus blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from .tad import pad_sequences, window_seconds


class AnomalyError(ValueError):
    """Bad input to the anomaly code; the message names the problem."""


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


class AnomalyHead(nn.Module):
    """Per-window anomaly logits and feature magnitudes from a (B, L, d) sequence."""

    def __init__(self, dim: int, hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, hidden, 3, padding=1)
        self.conv2 = nn.Conv1d(hidden, hidden, 3, padding=1)
        self.norm = nn.LayerNorm(hidden)
        self.score = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Dropout(dropout),
                                   nn.Linear(hidden // 2, 1))

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (logits (B, L), magnitudes (B, L), embedded features (B, L, hidden))."""
        if feats.ndim != 3:
            raise AnomalyError(f"AnomalyHead expects (B, L, d) window features, got shape {tuple(feats.shape)}")
        if mask is None:
            mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        m = mask.unsqueeze(1).to(feats.dtype)
        x = F.relu(self.conv1(feats.transpose(1, 2) * m)) * m
        x = F.relu(self.conv2(x)) * m + x  # residual temporal context
        h = self.norm(x.transpose(1, 2)) * mask.unsqueeze(-1).to(x.dtype)
        # Magnitude before the norm: MGFN's signal is how strongly a window's features respond.
        mag = x.transpose(1, 2).norm(dim=-1)
        return self.score(h).squeeze(-1), mag, x.transpose(1, 2)


def _topk_mask(values: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """(B, L) -> (B, L) float weights averaging each row's top-k valid entries (k capped by length)."""
    filled = values.masked_fill(~mask, float("-inf"))
    kk = min(k, values.shape[1])
    idx = filled.topk(kk, dim=1).indices
    sel = torch.zeros_like(values).scatter(1, idx, 1.0) * mask.to(values.dtype)
    return sel / sel.sum(1, keepdim=True).clamp_min(1.0)


def anomaly_loss(logits: torch.Tensor, mags: torch.Tensor, feats: torch.Tensor, mask: torch.Tensor,
                 labels: torch.Tensor, cfg) -> dict[str, torch.Tensor]:
    """MGFN-style weakly supervised loss (cfg: AnomalyTaskConfig). labels (B,) in {0, 1}."""
    labels = labels.float()
    scores = torch.sigmoid(logits.float()) * mask
    video_score = (scores * _topk_mask(scores.detach(), mask, cfg.topk)).sum(1)
    l_cls = F.binary_cross_entropy(video_score.clamp(1e-6, 1 - 1e-6), labels)
    ab = labels > 0.5
    pair = mask[:, 1:] & mask[:, :-1]
    smooth = (((scores[:, 1:] - scores[:, :-1]) ** 2) * pair).sum(1)
    sparse = scores.sum(1)
    l_smooth = (smooth * ab).sum() / ab.sum().clamp_min(1)
    l_sparse = (sparse * ab).sum() / ab.sum().clamp_min(1)
    # Magnitude contrastive term on the mean feature of each video's top-k-magnitude windows.
    top = (feats.float() * _topk_mask(mags.detach().float(), mask, cfg.topk).unsqueeze(-1)).sum(1)
    dist = torch.cdist(top, top)  # (B, B)
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pull = dist.pow(2)[same & off]
    push = F.relu(cfg.margin - dist).pow(2)[~same]
    l_mc = (pull.mean() if pull.numel() else dist.sum() * 0.0) + (push.mean() if push.numel() else dist.sum() * 0.0)
    total = l_cls + cfg.w_smooth * l_smooth + cfg.w_sparse * l_sparse + cfg.w_mc * l_mc
    return {"loss": total, "cls": l_cls.detach(), "smooth": l_smooth.detach(), "sparse": l_sparse.detach(),
            "mc": l_mc.detach()}


# ------------------------------------------------------------------------------------------------
# Frame-level evaluation
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# Training a head on frozen features (evaluation protocol)
# ------------------------------------------------------------------------------------------------


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
    x, mask = pad_sequences([torch.from_numpy(np.ascontiguousarray(crop(f, max_len, rng), np.float32)) for f in feats])
    return x, mask


def train_anomaly_head(videos: list[AnomalyVideo], feats: list[np.ndarray], cfg, seed: int = 0,
                       batch_size: int = 8) -> AnomalyHead:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = np.array([v.label for v in videos])
    head = AnomalyHead(feats[0].shape[-1], cfg.hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=0.05)
    steps_per_epoch = max(1, len(videos) // batch_size)
    head.train()
    for _ in range(cfg.epochs):
        for _ in range(steps_per_epoch):
            idx = balanced_batch(labels, batch_size, rng)
            x, mask = sequence_batch([feats[i] for i in idx], cfg.max_windows, rng)
            logits, mags, emb = head(x, mask)
            loss = anomaly_loss(logits, mags, emb, mask, torch.from_numpy(labels[idx]), cfg)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            opt.step()
    return head.eval()


@torch.no_grad()
def window_probabilities(head: AnomalyHead, feats: list[np.ndarray]) -> list[np.ndarray]:
    return [torch.sigmoid(head(torch.from_numpy(np.ascontiguousarray(f, np.float32))[None])[0][0]).numpy() for f in feats]


def anomaly_auc(train: list[AnomalyVideo], test: list[AnomalyVideo], cfg, transform=None, seed: int = 0) -> float:
    """Train on ``train`` (video labels), frame-level AUC on ``test``; ``transform`` maps (L, d) sequences."""
    from .tad import _standardize

    f = transform or (lambda x: x)
    tr, te = _standardize([f(v.feats) for v in train], [f(v.feats) for v in test])
    head = train_anomaly_head(train, tr, cfg, seed)
    return frame_auc(test, window_probabilities(head, te))


def evaluate_anomaly(cfg, adapter, store) -> dict:
    """results.json "anomaly": heads trained on raw vs anonymized features (cfg.loss.ad splits)."""
    from .evaluate import anonymize

    a = cfg.loss.ad
    clip_len = int(store.meta.get("clip_len", cfg.data.clip_len))
    train, test = (anomaly_videos(store.load(s), clip_len) for s in (a.train_split, a.test_split))
    for name, vids in ((a.train_split, train), (a.test_split, test)):
        if not vids:
            raise AnomalyError(f"split {name!r} has no videos in the feature store {store.root} (loss.ad.*_split)")
    out = {f"auc_{tag}": anomaly_auc(train, test, a, f, cfg.seed)
           for tag, f in (("raw", None), ("anonymized", lambda x: anonymize(adapter, x[None])[0]))}
    out["sizes"] = {"train": len(train), "test": len(test), "abnormal_train": int(sum(v.label for v in train))}
    return out
