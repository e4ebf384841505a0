"""The anomaly detection task: a weakly supervised head trained on raw vs anonymized window features.

UCF-Crime protocol: a fresh ``AnomalyHead`` is trained with video-level labels on
``eval.anomaly.train_split`` and scored by the frame-level ROC AUC on ``eval.anomaly.test_split``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import Config
from ..data.feature_store import FeatureStore
from ..data.sequences import AnomalyError, AnomalyVideo, anomaly_videos, balanced_batch, sequence_batch
from ..metrics.anomaly import frame_auc, frame_elements
from ..metrics.bootstrap import weighted_auc
from ..models.adapter import AnonymizingAdapter
from ..models.heads import AnomalyHead
from ..objectives.anomaly import anomaly_loss
from ..progress import Progress
from .report import TableColumn
from .task import EvalInputError, EvalTask, sequence_views, split_rows, standardize
from .uncertainty import Headline, intervals, training_seeds


def train_anomaly_head(videos: list[AnomalyVideo], feats: list[np.ndarray], cfg, seed: int = 0,
                       batch_size: int = 8) -> AnomalyHead:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = np.array([v.label for v in videos])
    head = AnomalyHead(feats[0].shape[-1], cfg.hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=0.05)
    steps_per_epoch = max(1, len(videos) // batch_size)
    head.train()
    bar = Progress(cfg.epochs, "anomaly head", unit="epoch", delay=5.0)  # shown only when training is slow
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
        bar.update(1)
    bar.close()
    return head.eval()


@torch.no_grad()
def window_probabilities(head: AnomalyHead, feats: list[np.ndarray]) -> list[np.ndarray]:
    return [torch.sigmoid(head(torch.from_numpy(np.ascontiguousarray(f, np.float32))[None])[0][0]).numpy() for f in feats]


def anomaly_auc(train: list[AnomalyVideo], test: list[AnomalyVideo], cfg, transform=None, seed: int = 0) -> float:
    """Train on ``train`` (video labels), frame-level AUC on ``test``; ``transform`` maps (L, d) sequences."""
    return frame_auc(test, anomaly_scores(train, test, cfg, transform, seed))


def anomaly_scores(train: list[AnomalyVideo], test: list[AnomalyVideo], cfg, transform=None,
                   seed: int = 0) -> list[np.ndarray]:
    """Train on ``train`` (video labels); each test video's window probabilities."""
    f = transform or (lambda x: x)
    tr, te = standardize([f(v.feats) for v in train], [f(v.feats) for v in test])
    head = train_anomaly_head(train, tr, cfg, seed)
    return window_probabilities(head, te)


def evaluate_anomaly(cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
    """results.json "anomaly": heads trained on raw vs anonymized features (eval.anomaly splits)."""
    a = cfg.eval.anomaly
    clip_len = int(store.meta.get("clip_len", cfg.data.clip_len))
    train, test = (anomaly_videos(store.load(s), clip_len) for s in (a.train_split, a.test_split))
    for name, vids in ((a.train_split, train), (a.test_split, test)):
        if not vids:
            raise AnomalyError(f"split {name!r} has no videos in the feature store {store.root} (eval.anomaly.*_split)")
    seeds, head, out = training_seeds(cfg), Headline(), {}
    for tag, f in sequence_views(adapter):
        for seed in seeds:
            windows = anomaly_scores(train, test, a, f, seed)
            elements = frame_elements(test, windows)  # frames grouped by (video, window, label)
            head.add(tag, frame_auc(test, windows), lambda c, e=elements: weighted_auc(*e, c))
        out[f"auc_{tag}"] = head.point(tag)
    out["auc_chance"] = 50.0  # random scores rank an anomalous frame above a normal one half the time
    out["chance_reference"] = {"auc": {"random_scores": 50.0}}
    out["intervals"] = intervals(cfg, len(test), "test video", {"auc": head}, seeds)
    out["sizes"] = {"train": len(train), "test": len(test), "abnormal_train": int(sum(v.label for v in train))}
    return out


class AnomalyTask(EvalTask):
    name = "anomaly"
    columns = (TableColumn("anomaly AUC (UCF-Crime protocol)", "anomaly", "auc", True),)

    def check(self, cfg: Config, path: str) -> None:
        a = cfg.eval.anomaly
        _, rows = split_rows(path, a.train_split)
        if {bool(r.get("anomaly")) for r in rows} != {True, False}:
            raise EvalInputError(f"manifest {path!r}, split {a.train_split!r} needs both normal and anomalous videos "
                                 "(eval.anomaly.train_split)")
        _, rows = split_rows(path, a.test_split)
        if not any(r.get("anomaly_segments") for r in rows):
            raise EvalInputError(f"manifest {path!r}, split {a.test_split!r} has no anomaly segments to score "
                                 "(eval.anomaly.test_split)")

    def run(self, cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
        return evaluate_anomaly(cfg, adapter, store)
