"""Training batches from the feature store (cached mode), identical on every resume.

The global order of videos in an epoch is a pure function of (seed, epoch) and each rank takes its
equal share of every global batch, so a resumed run sees exactly the batches an uninterrupted one
would, and all ranks take the same number of steps. With co-training on, every trimmed batch carries
a few untrimmed videos for the TAD / anomaly heads, drawn as a function of (seed, epoch, step, rank).
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import Config
from ..data.feature_store import FeatureStore
from ..data.sequences import anomaly_videos, balanced_batch, detection_videos, sequence_batch, video_batch
from .model import Batch, SequenceBatch


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The global order of videos in an epoch: a pure function of (seed, epoch) so resumes repeat it."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def rank_batches(n: int, global_batch: int, rank: int, world: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Indices of this rank's micro-batches: every rank gets the same number (last partial dropped)."""
    order = epoch_permutation(n, seed, epoch)
    per_rank = global_batch // world
    steps = n // global_batch
    return [order[s * global_batch + rank * per_rank: s * global_batch + (rank + 1) * per_rank] for s in range(steps)]


class CachedSource:
    """Cached mode: features from the feature store, in a global order that is a pure function of
    (seed, epoch), so a resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, store: FeatureStore | str, train_splits: list[str], val_splits: list[str], cfg: Config,
                 rank: int = 0, world: int = 1):
        store = FeatureStore.open(store) if isinstance(store, str) else store
        train, val = store.load(*train_splits), store.load(*val_splits)
        self.cfg, self.rank, self.world = cfg, rank, world
        self.clips, self.static = torch.from_numpy(train.stacked_clips()), torch.from_numpy(train.stacked_static())
        self.action = torch.from_numpy(train.action_ids)
        self.val = (torch.from_numpy(val.stacked_clips()), torch.from_numpy(val.stacked_static()),
                    torch.from_numpy(val.action_ids))
        self.dim, self.num_actions, self.num_train = train.dim, len(store.meta["actions"]), len(train)
        self.meta = {"backbone": store.meta.get("backbone", {})}
        # Co-training: untrimmed videos ride along with every trimmed batch (loss.w_tad / loss.w_ad > 0).
        clip_len = int(store.meta.get("clip_len", cfg.data.clip_len))
        lc, tad, ad = cfg.loss, cfg.eval.tad, cfg.eval.anomaly
        self.tad_videos = self._untrimmed(store, tad.train_split, "eval.tad.train_split", "TAD") if lc.w_tad > 0 else []
        if self.tad_videos:
            self.tad_videos = detection_videos(self.tad_videos, clip_len, store.meta["actions"])
        self.ad_videos = self._untrimmed(store, ad.train_split, "eval.anomaly.train_split", "AD") if lc.w_ad > 0 else []
        if self.ad_videos:
            self.ad_videos = anomaly_videos(self.ad_videos, clip_len)
            self.ad_labels = np.array([v.label for v in self.ad_videos])
            balanced_batch(self.ad_labels, 2, np.random.default_rng(0))  # fails now if one kind is missing
        self.tad_classes = len(store.meta["actions"]) if self.tad_videos else 0

    @staticmethod
    def _untrimmed(store, split: str, key: str, task: str):
        rows = store.load(split)
        if not len(rows):
            raise ValueError(f"{task} co-training is on but config key '{key}' names split {split!r}, which has no "
                             f"videos in the feature store {store.root}")
        return rows

    def _tad_batch(self, rng: np.random.Generator):
        if not self.tad_videos:
            return None
        t, n = self.cfg.eval.tad, self.cfg.loss.tad_videos_per_step
        idx = rng.choice(len(self.tad_videos), n, replace=len(self.tad_videos) < n)
        vids = [self.tad_videos[i] for i in idx]
        x, mask, seg, lab = video_batch(vids, [v.feats for v in vids], t.max_windows, rng)
        return SequenceBatch(x, mask, lab, seg)

    def _ad_batch(self, rng: np.random.Generator):
        if not self.ad_videos:
            return None
        a = self.cfg.eval.anomaly
        idx = balanced_batch(self.ad_labels, self.cfg.loss.ad_videos_per_step, rng)
        x, mask = sequence_batch([self.ad_videos[i].feats for i in idx], a.max_windows, rng)
        return SequenceBatch(x, mask, torch.from_numpy(self.ad_labels[idx]))

    def batches(self, epoch: int):
        for step, idx in enumerate(rank_batches(self.num_train, self.cfg.optim.batch_size, self.rank, self.world,
                                                self.cfg.seed, epoch)):
            # Untrimmed draws are a pure function of (seed, epoch, step, rank): resumes repeat them, and
            # every rank takes exactly one per trimmed step, so all ranks run the same number of steps.
            rng = np.random.default_rng([self.cfg.seed, epoch, step, self.rank])
            yield Batch(self.clips[idx], self.static[idx], self.action[idx], self._tad_batch(rng), self._ad_batch(rng))

    def validation(self):
        return self.val
